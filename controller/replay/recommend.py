"""Which policy to deploy: the best one whose lower bound beats the logged policy.

Read from the replay document (`controller.replay.document`), by the leading
estimator (DR; graph DR on a log with traces):

- a candidate is every evaluated policy but the logged one;
- it qualifies when the lower end of its reward interval (or of its bounds)
  is above the logged policy's estimated reward, under the configured
  weights, and it keeps the configured guardrail: in no segment is its EM,
  at the interval's confidence, more than `guardrail.max_em_drop_pts` below
  the reference arm's (its interval's upper end below the reference's lower
  end less δ, the daemon's one-sided rule made two-interval);
- the recommendation is the qualifying candidate with the highest reward
  estimate; none qualifies: keep the logged policy, and say why.

Each point of a `--sweep` is recommended the same way under its own weights.
Its rewards come from the EM and token estimates (reward is linear in them),
and so do its intervals, each end from the matching ends of EM's and tokens'
(em_weight·EM_low - cost·tokens_high/1000, ...): wider than the per-row reward
interval, which knows their covariance, but never narrower, so a point's
recommendation is conservative, and labelled with its weights.
"""

from __future__ import annotations

import math
from typing import Any

_KEYS = ("reward", "em", "tokens")


def _policies(policies: list[dict[str, Any]], estimator: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in policies if p["estimator"] == estimator}


def _triple(policy: dict[str, Any], key: str) -> list[float | None]:
    prefix = "" if key == "reward" else f"{key}_"
    return [policy[key], policy[f"{prefix}ci_low"], policy[f"{prefix}ci_high"]]


def _under(policy: dict[str, Any], weights: dict[str, float]) -> list[float | None]:
    # The reward under other weights, from EM's and tokens' estimates and their ends.
    em, tokens = _triple(policy, "em"), _triple(policy, "tokens")
    if any(v is None for v in (*em, *tokens)):
        return [None, None, None]
    a, c = weights["em_weight"], weights["token_cost_per_1k"] / 1000.0
    return [a * em[0] - c * tokens[0], a * em[1] - c * tokens[2], a * em[2] - c * tokens[1]]  # type: ignore[operator]


def _guardrail_breaches(
    name: str,
    segments: dict[str, dict[str, dict[str, Any]]],
    reference: str | None,
    drop_pts: dict[str, float | None],
) -> list[str]:
    if reference is None:
        return []
    breaches = []
    for segment, policies in segments.items():
        delta = drop_pts.get(segment)
        candidate, ref = policies.get(name), policies.get(reference)
        if delta is None or candidate is None or ref is None:
            continue
        high, ref_low = candidate["em_ci_high"], ref["em_ci_low"]
        if high is not None and ref_low is not None and high < ref_low - delta / 100.0:
            breaches.append(segment)
    return breaches


def recommend(
    document: dict[str, Any],
    estimator: str,
    *,
    weights: dict[str, float] | None = None,
    reference: str | None = None,
    drop_pts: dict[str, float | None] | None = None,
) -> dict[str, Any]:
    """The recommendation under `weights` (the document's own when None).

    Args:
        document: The replay document.
        estimator: The estimator to read (the leading one).
        weights: Reward weights {em_weight, token_cost_per_1k}; None for the
            configured ones, whose per-row reward intervals are then used.
        reference: The reference arm's policy name (`fixed:1`), for the guardrail.
        drop_pts: δ per segment in EM points (None: unconstrained).

    Returns:
        {"policy", "estimator", "weights", "reward", "em", "tokens" (each
        [value, low, high]), "interval", "identified", "logged_reward",
        "reason", "guardrail_excluded": [names]}; "policy" is None when no
        candidate qualifies (keep the logged policy).
    """
    overall = _policies(document["policies"], estimator)
    segments = {
        s: _policies(entry["policies"], estimator) for s, entry in document["segments"].items()
    }
    configured = weights is None
    used = document["settings"]["reward"] if weights is None else weights
    logged = overall.get("logged")
    if logged is None or logged["reward"] is None:
        return _keep(estimator, used, None, "the logged policy has no estimate to beat", [])
    baseline = logged["reward"] if configured else _under(logged, used)[0]
    if baseline is None:
        return _keep(estimator, used, None, "the logged policy has no estimate to beat", [])
    best: tuple[float, dict[str, Any], list[float | None]] | None = None
    excluded = []
    for name, policy in overall.items():
        if name == "logged":
            continue
        reward = _triple(policy, "reward") if configured else _under(policy, used)
        if reward[0] is None or reward[1] is None or reward[1] <= baseline:
            continue
        if _guardrail_breaches(name, segments, reference, drop_pts or {}):
            excluded.append(name)
            continue
        if best is None or reward[0] > best[0]:
            best = (reward[0], policy, reward)
    if best is None:
        reason = (
            f"no policy's lower bound beats the logged policy's reward {baseline:.4f}"
            + (f" within the guardrail ({', '.join(excluded)} breach it)" if excluded else "")
            + ": keep the logged policy"
        )
        return _keep(estimator, used, baseline, reason, excluded)
    _, policy, reward = best
    lower = reward[1] if reward[1] is not None else math.nan  # a qualifier has one
    return {
        "policy": policy["name"],
        "estimator": estimator,
        "weights": dict(used),
        "reward": reward,
        "em": _triple(policy, "em"),
        "tokens": _triple(policy, "tokens"),
        "interval": policy.get("interval", "wald"),
        "identified": policy.get("identified", 1.0),
        "logged_reward": baseline,
        "reason": (
            f"its reward's lower {'bound' if policy.get('interval') == 'bounds' else 'end'} "
            "{} beats the logged policy's {}".format(*_apart(lower, baseline))
        ),
        "guardrail_excluded": excluded,
    }


def _keep(
    estimator: str,
    weights: dict[str, float],
    baseline: float | None,
    reason: str,
    excluded: list[str],
) -> dict[str, Any]:
    return {
        "policy": None,
        "estimator": estimator,
        "weights": dict(weights),
        "reward": None,
        "em": None,
        "tokens": None,
        "interval": None,
        "identified": None,
        "logged_reward": baseline,
        "reason": reason,
        "guardrail_excluded": excluded,
    }


def _apart(above: float, below: float) -> tuple[str, str]:
    # Enough digits that the one shown to beat the other is seen to: 4, or more when closer.
    for digits in range(4, 10):
        shown = f"{above:.{digits}f}", f"{below:.{digits}f}"
        if shown[0] != shown[1]:
            return shown
    return f"{above:.10g}", f"{below:.10g}"


def weights_label(weights: dict[str, float]) -> str:
    """`em_weight=1, token_cost_per_1k=0.02`: how a recommendation names its weights."""
    return f"em_weight={weights['em_weight']:g}, token_cost_per_1k={weights['token_cost_per_1k']:g}"
