"""Replay's JSON document on the hand-written log (conftest): names, estimators, fields."""

from __future__ import annotations

import json

from stopbandit.controller.ope import ESTIMATORS
from stopbandit.controller.replay.document import build_document
from stopbandit.controller.replay.evaluate import evaluate
from stopbandit.controller.replay.feed import replay
from stopbandit.controller.replay.settings import ReplaySettings
from stopbandit.controller.replay.targets import (
    Sweep,
    fixed_targets,
    learned_target,
    logged_target,
    sweep_targets,
)

# Hand-computed values on cells of a row or two: every observed cell estimated (conftest).
POINT = ReplaySettings(min_ess=0.0)


def test_policies_are_named_and_the_json_holds_every_required_field(config, lines, raw):
    """logged, fixed:<t>, learned and sweep:<token cost>, each with three estimators."""
    result = replay(raw(lines), config)
    sweep = Sweep.parse("token_cost_per_1k=0:20:3")
    targets = [logged_target(), *fixed_targets(result), learned_target(result)]
    targets += sweep_targets(result, sweep)
    document = build_document(
        result, evaluate(result, targets, config.reward, settings=POINT), targets, config.reward,
        sources=["test"], publish_every=1000, folds=5, fold_seed=0, confidence=0.95, sweep=sweep,
    )  # fmt: skip
    names = [(p["name"], p["estimator"]) for p in document["policies"]]
    expected_names = [
        "logged",
        "fixed:0.5",
        "fixed:1",
        "learned",
        "sweep:0",
        "sweep:10",
        "sweep:20",
    ]
    assert names == [(n, e) for n in expected_names for e in ("ips", "snips", "dr")]
    required = {"name", "estimator", "reward", "ci_low", "ci_high", "em", "tokens", "ess"}
    assert all(required <= set(p) for p in document["policies"])
    assert set(document["segments"]) == {"a", "b"}
    assert len(document["segments"]["a"]["policies"]) == len(names)
    json.dumps(document, allow_nan=False)  # NaN (SNIPS without weight) is null


def test_every_registered_estimator_appears_for_every_policy_in_registration_order(document):
    """Overall and in each segment, each policy has one entry per estimator, registry order."""
    for policies in [document["policies"], *(e["policies"] for e in document["segments"].values())]:
        by_name = {}
        for policy in policies:
            by_name.setdefault(policy["name"], []).append(policy["estimator"])
        assert list(by_name) == ["logged", "fixed:0.5", "fixed:1"]
        # The hand-written log has no traces: the estimators that read them are left out.
        names = tuple(e.name for e in ESTIMATORS.for_log(traced=False))
        assert all(tuple(estimators) == names for estimators in by_name.values())
