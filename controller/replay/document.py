"""The replay result as one JSON-ready document: what `--json` prints and `--report` draws.

Layout (every number a float, NaN and infinities as null):

    {"input": {"sources", "events", "decisions", "outcomes", "invalid": {kind: n},
               "join": {joined, expired, orphans, duplicates, already_joined, evicted,
                        mismatched}, "pending_at_end", "interactions",
               "traces": {"kept", "incomplete", "dropped": {reason: n}}},  # with traces
     "settings": {"arms", "reward", "publish_every", "learned", "folds", "fold_seed",
                  "confidence", "replay" (min_ess, em_bounds, token_bounds,
                  warnings_shown), "guardrail" (max_em_drop_pts, confidence)},
     "policies": [<policy>, ...],                    # overall
     "segments": {segment: {"n", "policies": [<policy>, ...],
                            "learned": {"greedy", "pmf", "em", "tokens", "n", "reward"} | null}},
     "learned": {"greedy": {segment: threshold}} | null,
     "sweep": [{"name", "field", "value", "reward_weights", "greedy": {segment: threshold}}],
     "checkpoint": {"files": [...], "format": "controller.daemon.checkpoint_stores v1"} | null,
     "recommendation": <recommendation>,
     "sweep_recommendations": [<recommendation> + {"name", "label"}, ...]}

<recommendation> (`controller.replay.recommend`) is the best policy whose
reward's lower bound beats the logged policy under the configured weights
and guardrail (`policy` null: keep the logged policy, with the reason), and
per sweep point the same under that point's weights, labelled with them.

where <policy> is `PolicyEstimate.to_json()`: name, kind, estimator, reward,
ci_low, ci_high (of the reward), em, em_ci_low, em_ci_high, tokens,
tokens_ci_low, tokens_ci_high, ess, max_weight, n, support, warnings
(ranked, largest share of the target's mass first), warning_shares,
interval ("wald", "wald-delta", or "bounds": then the ci fields are
partial-identification bounds and the value their midpoint) and identified
(the share of the target's mass estimated rather than bounded). Each
list of policies holds, per target, one entry per estimator of
`controller.ope.registry`, in registration order (`ips`, `snips`, `dr`).

A log whose outcomes carry counterfactual traces (SCHEMA 1.1) adds
`input.traces` (traces kept, incomplete among them, dropped by reason), the
estimators that read them (`ips_graph`, `dr_graph`, `direct`) to every list
of policies, and to each <policy> `observed`: {"share", "n", "played",
"traced"}, on how many requests the target's arm was observed (played, or
shown by a trace): for a fixed threshold, `n` is its count of direct
observations, what its `direct` estimate averages. A log without traces has
none of these, and its document is what it was before traces existed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stopbandit.controller.ope.registry import ESTIMATORS
from stopbandit.controller.replay.recommend import recommend, weights_label
from stopbandit.policies.reward import reward
from stopbandit.streams.arms import arm_label

if TYPE_CHECKING:
    from stopbandit.controller.config import RewardConfig
    from stopbandit.controller.ope.registry import Estimator
    from stopbandit.controller.replay.estimates import Evaluation
    from stopbandit.controller.replay.feed import ReplayLog
    from stopbandit.controller.replay.settings import ReplaySettings
    from stopbandit.controller.replay.targets import Sweep, Target
    from stopbandit.policies.guardrail import GuardrailConfig


def build_document(
    log: ReplayLog,
    evaluation: Evaluation,
    targets: list[Target],
    weights: RewardConfig,
    *,
    sources: list[str],
    publish_every: int,
    folds: int,
    fold_seed: int,
    confidence: float,
    sweep: Sweep | None = None,
    settings: ReplaySettings | None = None,
    guardrail: GuardrailConfig | None = None,
) -> dict[str, Any]:
    """Everything replay found, in the layout of the module docstring.

    `settings` and `guardrail` are recorded in `settings` (the guardrail also
    constrains the recommendation: δ per segment against the reference arm,
    the highest).
    """
    counts = {segment: int((log.segment == i).sum()) for i, segment in enumerate(log.segments)}
    learned = _learned(log, weights)
    document = {
        "input": {"sources": sources, **log.stats.to_json(), "interactions": log.n},
        "settings": {
            "arms": log.arms,
            "reward": weights.model_dump(),
            "publish_every": publish_every,
            "learned": log.core is not None,
            "folds": folds,
            "fold_seed": fold_seed,
            "confidence": confidence,
            **({"replay": settings.model_dump(mode="json")} if settings is not None else {}),
            **({"guardrail": guardrail.model_dump(mode="json")} if guardrail is not None else {}),
        },
        "policies": [e.to_json() for e in evaluation.overall],
        "segments": {
            segment: {
                "n": counts[segment],
                "policies": [e.to_json() for e in evaluation.segments[segment]],
                "learned": learned.get(segment),
            }
            for segment in log.segments
        },
        "learned": ({"greedy": {s: v["greedy"] for s, v in learned.items()}} if log.core else None),
        "sweep": [
            {
                "name": t.name,
                "field": sweep.field if sweep else None,
                "value": getattr(t.weights, sweep.field) if sweep and t.weights else None,
                "reward_weights": t.weights.model_dump() if t.weights else None,
                "greedy": t.greedy,
            }
            for t in targets
            if t.kind == "sweep"
        ],
        "checkpoint": None,
    }
    add_recommendations(document, log.arms, guardrail)
    return document


def add_recommendations(
    document: dict[str, Any], arms: list[float], guardrail: GuardrailConfig | None
) -> None:
    """Set `recommendation` and `sweep_recommendations` from the document's policies.

    Called again by a caller that adds policies to the document afterwards.
    """
    lead = ESTIMATORS.lead(traced(document)).name
    drop_pts = (
        {s: guardrail.drop_pts_for(s) for s in document["segments"]}
        if guardrail is not None
        else {}
    )
    reference = f"fixed:{arm_label(arms[-1])}"
    document["recommendation"] = recommend(document, lead, reference=reference, drop_pts=drop_pts)
    points = []
    for point in document["sweep"]:
        weights = point["reward_weights"]
        if weights is None:
            continue
        found = recommend(document, lead, weights=weights, reference=reference, drop_pts=drop_pts)
        points.append({"name": point["name"], "label": weights_label(weights), **found})
    document["sweep_recommendations"] = points


def _learned(log: ReplayLog, weights: RewardConfig) -> dict[str, dict[str, Any]]:
    # The policy the core published last for each segment, with the estimates behind it.
    if log.core is None:
        return {}
    result: dict[str, dict[str, Any]] = {}
    policies = log.core.policies
    for segment in log.segments:
        policy = policies.get(segment)
        if policy is None:
            continue
        entry: dict[str, Any] = {"greedy": policy.greedy, "pmf": policy.pmf}
        if policy.estimates is not None:
            em, tokens = policy.estimates.em, policy.estimates.tokens
            entry |= {
                "em": em,
                "tokens": tokens,
                "n": policy.estimates.n,
                "reward": [reward(e, t, weights) for e, t in zip(em, tokens, strict=True)],
            }
        result[segment] = entry
    return result


def traced(document: dict[str, Any]) -> bool:
    """Whether the document's estimates read counterfactual traces (they say what they observed)."""
    return any("observed" in policy for policy in document["policies"])


def lead_and_others(document: dict[str, Any]) -> tuple[Estimator, list[Estimator]]:
    """The estimator tables and plots lead with, and the others the document holds, in order."""
    lead = ESTIMATORS.lead(traced(document))
    present = {policy["estimator"] for policy in document["policies"]}
    return lead, [e for e in ESTIMATORS if e.name in present and e is not lead]
