"""The replay report's opening section: what to deploy, why, and what each sweep point would.

Drawn from the document's `recommendation` and `sweep_recommendations`
(`controller.replay.recommend`): a verdict in one sentence, the rule it
follows, and one row per set of weights (the configured ones, then each
sweep point's) with the policy, its reward, EM and tokens and their
intervals, or bounds where the policy is partially identified.
"""

from __future__ import annotations

import html
from typing import Any


def _triple(found: dict[str, Any], key: str, digits: int) -> str:
    value, low, high = found[key]
    if value is None:
        return "n/a"
    if found["interval"] == "bounds":
        return f"between {low:,.{digits}f} and {high:,.{digits}f}"
    return f"{value:,.{digits}f} <small>[{low:,.{digits}f}, {high:,.{digits}f}]</small>"


def _recommendation_row(label: str, found: dict[str, Any]) -> str:
    if found["policy"] is None:
        return (
            f"<tr><td>{html.escape(label)}</td><td><b>keep the logged policy</b></td>"
            f"<td colspan=3 class=w>"
            f"{html.escape(found['reason'].removesuffix(': keep the logged policy'))}</td></tr>"
        )
    return (
        f"<tr><td>{html.escape(label)}</td><td><b>{html.escape(found['policy'])}</b></td>"
        f"<td>{_triple(found, 'reward', 4)}</td><td>{_triple(found, 'em', 4)}</td>"
        f"<td>{_triple(found, 'tokens', 0)}</td></tr>"
    )


def recommendation_html(document: dict[str, Any]) -> str:
    """The page's opening: what to deploy, why, and what each sweep point would deploy."""
    found = document.get("recommendation")
    if found is None:
        return ""
    reward = document["settings"]["reward"]
    configured = (
        f"configured: em_weight={reward['em_weight']:g}, "
        f"token_cost_per_1k={reward['token_cost_per_1k']:g}"
    )
    guardrail = document["settings"].get("guardrail") or {}
    limit = guardrail.get("max_em_drop_pts")
    constraint = (
        f" and no segment's EM confidently more than {html.escape(str(limit))} points below "
        "the reference arm's"
        if limit is not None
        else ""
    )
    head = (
        "<tr><th>weights</th><th>deploy</th><th>reward [interval]</th><th>EM</th>"
        "<th>tokens</th></tr>"
    )
    rows = [_recommendation_row(configured, found)]
    rows += [
        _recommendation_row(point["label"], point)
        for point in document.get("sweep_recommendations", [])
    ]
    why = html.escape(found["reason"])
    verdict = (
        f"<b>Keep the logged policy</b>: {why.removesuffix(': keep the logged policy')}."
        if found["policy"] is None
        else f"<b>Deploy {html.escape(found['policy'])}</b>: {why}."
    )
    return (
        "<h2>recommendation</h2>"
        f"<p class=rec>{verdict}</p>"
        f"<p class=note>The best policy whose reward's lower bound beats the logged policy's "
        f"({html.escape(found['estimator'])}, 95% intervals or bounds){constraint}, under the "
        "configured weights and under each sweep point's:</p>"
        f"<table>{head}{''.join(rows)}</table>"
        "<p class=note>Sweep rows: each point's weights applied to every policy's EM and token "
        "estimates; their reward intervals combine the ends of those (wider than the per-row "
        "interval of the configured weights, never narrower).</p>"
    )
