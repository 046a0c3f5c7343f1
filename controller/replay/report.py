"""`replay --report DIR`: a plain HTML page and PNG plots drawn from the replay document.

- `frontier.png`: per segment (and overall), expected tokens against
  expected EM of every evaluated policy (by the primary estimator of
  `controller.ope.registry`, DR, with 95% intervals on both axes); the
  sweep's points joined in order trace the EM-tokens frontier.
- `arms.png`: per segment, the primary estimator's reward of each fixed
  threshold with its interval, next to the learner's final estimate of each arm.
- `index.html`: the tables of the document (every estimator of every policy),
  with both plots embedded as data URIs so the page is one self-contained
  file (no scripts).

On a log with counterfactual traces the plots lead with graph DR
(`Registry.lead`), `arms.png` adds each fixed threshold's direct estimate
(its mean over the requests that observed it), the tables gain an
`observed` column (the share of requests at which the policy's arm was
observed, and how many of those the trace showed rather than the played
arm), and the summary counts the traces kept and dropped.

The page opens with the recommendation (`controller.replay.recommend`): the
policy to deploy with its EM, tokens and reward and their intervals, and what
each sweep point would deploy under its weights. A partially identified
estimate (interval "bounds": the target puts mass on arms the log barely
observed) is drawn hollow with dashed grey bars spanning its bounds, so it
never passes for a point estimate; a table shows each policy's warnings once, ranked,
the first few of them and how many more.
"""

from __future__ import annotations

import base64
import html
import math
from typing import TYPE_CHECKING, Any

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt

from stopbandit.controller.replay.document import lead_and_others, traced
from stopbandit.controller.replay.plot_bounds import arm_bounds, draw_bounded, limit_to_estimates
from stopbandit.controller.replay.recommendation_html import recommendation_html
from stopbandit.controller.replay.target_report import target_sections
from stopbandit.streams.arms import arm_label

if TYPE_CHECKING:
    from pathlib import Path

    from matplotlib.axes import Axes

_COLUMNS = 3
_PANEL_IN = 4.2
_DIRECT = "direct"
_OFFSET = 0.15  # the direct estimate beside the leading one, not on top of it
_STYLE = {"logged": ("black", "s"), "learned": ("tab:red", "*"), "fixed": ("tab:blue", "o")}


def _scopes(document: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    scopes = [("overall", document["policies"])]
    scopes += [(s, entry["policies"]) for s, entry in document["segments"].items()]
    return scopes


def _grid(count: int) -> tuple[Any, list[Axes]]:
    rows = math.ceil(count / _COLUMNS)
    columns = min(count, _COLUMNS)
    figure, axes = plt.subplots(
        rows, columns, figsize=(_PANEL_IN * columns, _PANEL_IN * rows), squeeze=False
    )
    flat = list(axes.ravel())
    for unused in flat[count:]:
        unused.set_visible(False)
    return figure, flat[:count]


def _error(value: float | None, low: float | None, high: float | None) -> list[float]:
    if value is None or low is None or high is None:
        return [0.0]
    return [max(value - low, 0.0), max(high - value, 0.0)]


def plot_frontier(document: dict[str, Any], path: Path) -> None:
    """Tokens against EM (leading estimates with intervals) per scope; the sweep as a line.

    The view is the estimates' (bounds can span the outcome's whole range): bounds whose
    middle lies in it are drawn, the others are named in the panel's corner.
    """
    primary, _ = lead_and_others(document)
    scopes = _scopes(document)
    figure, axes = _grid(len(scopes))
    for ax, (title, policies) in zip(axes, scopes, strict=True):
        sweep_x: list[float] = []
        sweep_y: list[float] = []
        bounded: list[dict[str, Any]] = []
        for policy in policies:
            if policy["estimator"] != primary.name or policy["em"] is None:
                continue
            if policy.get("interval") == "bounds":
                bounded.append(policy)
                continue
            if policy["kind"] == "sweep":
                sweep_x.append(policy["tokens"])
                sweep_y.append(policy["em"])
                continue
            if not policy["ess"]:
                continue  # no logged action supports it: nothing to draw
            color, marker = _STYLE.get(policy["kind"], ("tab:purple", "D"))
            ax.errorbar(
                policy["tokens"],
                policy["em"],
                xerr=[
                    [e]
                    for e in _error(
                        policy["tokens"], policy["tokens_ci_low"], policy["tokens_ci_high"]
                    )
                ],
                yerr=[[e] for e in _error(policy["em"], policy["em_ci_low"], policy["em_ci_high"])],
                color=color,
                marker=marker,
                capsize=2,
                alpha=0.4 if policy["warnings"] else 1.0,
            )
            ax.annotate(policy["name"], (policy["tokens"], policy["em"]), fontsize=6)
        if sweep_x:
            ax.plot(sweep_x, sweep_y, "-o", color="tab:green", markersize=3, label="sweep")
            ax.legend(fontsize=7)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("expected tokens", fontsize=7)
        ax.set_ylabel("expected EM", fontsize=7)
        ax.tick_params(labelsize=6)
        draw_bounded(ax, bounded, in_view=limit_to_estimates(ax, policies, primary.name))
    figure.suptitle(
        f"EM-tokens frontier ({primary.label}, 95% intervals; hollow, dashed grey: bounds where "
        "the log barely observed the arms; faded: warnings)",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_arms(document: dict[str, Any], path: Path) -> None:
    """Per segment: each fixed threshold's leading reward estimate, and the learner's view.

    With traces, each threshold's direct estimate too, beside the leading one.
    """
    primary, others = lead_and_others(document)
    overlay = next((e for e in others if e.name == _DIRECT), None)
    segments = list(document["segments"].items())
    figure, axes = _grid(len(segments))
    for ax, (segment, entry) in zip(axes, segments, strict=True):
        fixed = [
            p for p in entry["policies"] if p["kind"] == "fixed" and p["estimator"] == primary.name
        ]
        positions = list(range(len(fixed)))
        for x, policy in zip(positions, fixed, strict=True):
            if policy.get("interval") == "bounds" and policy["ci_low"] is not None:
                arm_bounds(ax, x, policy)
                continue
            if policy["reward"] is None or not policy["ess"]:
                continue
            ax.errorbar(
                x,
                policy["reward"],
                yerr=[[e] for e in _error(policy["reward"], policy["ci_low"], policy["ci_high"])],
                color="tab:blue",
                marker="o",
                capsize=3,
                alpha=0.4 if policy["warnings"] else 1.0,
            )
        if overlay is not None:
            _plot_direct(ax, entry["policies"], overlay.name, overlay.label)
        learned = entry.get("learned")
        if learned and "reward" in learned and len(learned["reward"]) == len(fixed):
            ax.plot(positions, learned["reward"], "x", color="tab:red", label="learner")
            ax.legend(fontsize=7)
        ax.set_xticks(positions, [p["name"].removeprefix("fixed:") for p in fixed], fontsize=6)
        ax.set_title(segment, fontsize=8)
        ax.set_xlabel(_arm_noun(document), fontsize=7)
        ax.set_ylabel("reward", fontsize=7)
        ax.tick_params(labelsize=6)
    figure.suptitle(
        f"Reward per arm: {primary.label} estimate (95% interval; hollow, dashed grey: bounds "
        "where the log barely observed the arm) and the learner",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _arm_noun(document: dict[str, Any]) -> str:
    # The document has the arms, not the knob; arms above 1 can only be token budgets.
    return "budget" if max(document["settings"]["arms"], default=0.0) > 1.0 else "threshold"


def _plot_direct(ax: Axes, policies: list[dict[str, Any]], name: str, label: str) -> None:
    fixed = [p for p in policies if p["kind"] == "fixed" and p["estimator"] == name]
    for x, policy in enumerate(fixed):
        if policy["reward"] is None:
            continue
        ax.errorbar(
            x + _OFFSET,
            policy["reward"],
            yerr=[[e] for e in _error(policy["reward"], policy["ci_low"], policy["ci_high"])],
            color="tab:green",
            marker="D",
            markersize=4,
            capsize=3,
            label=label if x == 0 else None,
            alpha=0.4 if policy["warnings"] else 1.0,
        )
    ax.legend(fontsize=7)


def _cell(value: Any, digits: int = 4) -> str:  # noqa: ANN401 - any JSON scalar
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(policies: list[dict[str, Any]], with_traces: bool, shown: int = 3) -> str:
    observed = "<th>observed (traced)</th>" if with_traces else ""
    head = (
        "<tr><th>policy</th><th>estimator</th><th>reward</th><th>95% interval (or bounds)</th>"
        "<th>EM</th><th>tokens</th><th>ESS</th><th>max weight</th><th>support</th>"
        f"{observed}<th>warnings</th></tr>"
    )
    rows = []
    spans = _policy_spans(policies)
    for i, p in enumerate(policies):
        warnings = _warnings_cell(policies, i, spans, shown)
        seen = ""
        if with_traces:
            o = p["observed"]
            seen = f"<td>{o['share']:.1%}: {o['n']:,.0f} ({o['traced']:,.0f})</td>"
        rows.append(
            f"<tr><td>{html.escape(p['name'])}</td><td>{html.escape(p['estimator'])}</td>"
            f"<td>{_middle(p, 'reward')}</td>"
            f"<td>{_interval_cell(p)}</td>"
            f"<td>{_middle(p, 'em')}</td><td>{_middle(p, 'tokens', 1)}</td>"
            f"<td>{_cell(p['ess'], 1)}</td><td>{_cell(p['max_weight'], 2)}</td>"
            f"<td>{_cell(p['support'], 3)}</td>{seen}{warnings}</tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _middle(policy: dict[str, Any], key: str, digits: int = 4) -> str:
    # A bounded estimate's value is the middle of its bounds: marked, never read as a point.
    if policy.get("interval") == "bounds" and policy[key] is not None:
        return f"<i title='the middle of bounds'>~{_cell(policy[key], digits)}</i>"
    return _cell(policy[key], digits)


def _interval_cell(policy: dict[str, Any]) -> str:
    ends = f"[{_cell(policy['ci_low'])}, {_cell(policy['ci_high'])}]"
    if policy.get("interval") == "bounds":
        return f"<i>bounds {ends}</i>"
    return ends


def _policy_spans(policies: list[dict[str, Any]]) -> dict[int, int]:
    # The first row of each run of rows of one policy (one per estimator), and its length.
    spans: dict[int, int] = {}
    start = 0
    for i in range(1, len(policies) + 1):
        if i == len(policies) or policies[i]["name"] != policies[start]["name"]:
            spans[start] = i - start
            start = i
    return spans


def _warnings_cell(
    policies: list[dict[str, Any]], row: int, spans: dict[int, int], shown: int
) -> str:
    # One cell per policy, over its estimators' rows: their warnings merged, largest share
    # of the target's mass first, the first `shown` of them and a count of the rest.
    if row not in spans:
        return ""
    ranked: dict[str, float] = {}
    for p in policies[row : row + spans[row]]:
        shares = p.get("warning_shares") or [0.0] * len(p["warnings"])
        for warning, share in zip(p["warnings"], shares, strict=True):
            first = warning.startswith("bounds, not an interval")
            ranked[warning] = max(ranked.get(warning, 0.0), share + (2.0 if first else 0.0))
    ordered = sorted(ranked, key=lambda w: -ranked[w])
    lines = [html.escape(w) for w in ordered[:shown]]
    if len(ordered) > shown:
        lines.append(f"<i>and {len(ordered) - shown} more (in the JSON document)</i>")
    return f"<td class=w rowspan={spans[row]}>{'<br>'.join(lines)}</td>"


def _shown(document: dict[str, Any]) -> int:
    return int(document["settings"].get("replay", {}).get("warnings_shown", 3))


def _traces(source: dict[str, Any]) -> str:
    traces = source.get("traces")
    if traces is None:
        return ""
    dropped = traces["dropped"]
    return (
        f" Counterfactual traces: {traces['kept']:,} kept ({traces['incomplete']:,} "
        f"incomplete), {sum(dropped.values()):,} dropped {html.escape(str(dropped))}; "
        "estimates also read every arm a request was observed at."
    )


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def write_report(document: dict[str, Any], directory: Path) -> Path:
    """Write index.html, frontier.png and arms.png into `directory`; return the page's path."""
    directory.mkdir(parents=True, exist_ok=True)
    frontier, arms = directory / "frontier.png", directory / "arms.png"
    plot_frontier(document, frontier)
    plot_arms(document, arms)
    source = document["input"]
    reward = document["settings"]["reward"]
    with_traces = traced(document)
    sections = [
        "<h1>stopbandit replay</h1>",
        recommendation_html(document),
        (
            f"<p>{source['events']:,} events from {html.escape(', '.join(source['sources']))}: "
            f"{source['interactions']:,} interactions, "
            f"{sum(source['invalid'].values()):,} invalid lines "
            f"{html.escape(str(source['invalid']))}; join {html.escape(str(source['join']))}. "
            f"Reward = {reward['em_weight']:g}·EM - "
            f"{reward['token_cost_per_1k']:g}·tokens/1000.{_traces(source)}</p>"
        ),
        _image(frontier, "EM-tokens frontier"),
        _image(arms, "reward per arm"),
        *target_sections(document, directory),  # replay --target (replay/target_report.py)
        "<h2>overall</h2>",
        _table(document["policies"], with_traces, _shown(document)),
    ]
    for segment, entry in document["segments"].items():
        learned = entry.get("learned") or {}
        greedy = (
            f"; learned greedy {_arm_noun(document)} {arm_label(learned['greedy'])}"
            if learned
            else ""
        )
        sections.append(
            f"<h2>{html.escape(segment)}</h2><p>{entry['n']:,} interactions{greedy}</p>"
        )
        sections.append(_table(entry["policies"], with_traces, _shown(document)))
    page = directory / "index.html"
    page.write_text(
        "<!doctype html><html><head><meta charset=utf-8><title>stopbandit replay</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
        "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "td.w{text-align:left;color:#a60;max-width:40em}img{max-width:100%}"
        "p.rec{font-size:15px}p.note{font-size:11px;color:#666}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n",
        encoding="utf-8",
    )
    return page
