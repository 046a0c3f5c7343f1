"""Target mode in the core: λ reaches the policies' weights and survives a checkpoint."""

from __future__ import annotations

import json

import pytest

from stopbandit.controller.config import load_config
from stopbandit.controller.core import ControllerCore, reward_weights, target_reference_floor
from stopbandit.streams.events import Decision, Outcome

ARMS = [0.5, 0.8, 1.0]
TARGET = {"token_reduction": 0.3, "interval_s": 1.0, "min_interactions": 10}


def serve(core: ControllerCore, start: int, count: int, threshold: float, tokens: int) -> None:
    """`count` requests of segment s served at `threshold` with `tokens` each."""
    for i in range(start, start + count):
        rid = f"r{i}"
        core.offer(
            Decision(
                v=1,
                request_id=rid,
                ts=float(i),
                segment="s",
                threshold=threshold,
                probability=1.0,
                policy_version=0,
            ),
            now=float(i),
        )
        core.offer(
            Outcome(v=1, request_id=rid, ts=float(i), segment="s", em=1.0, tokens=tokens),
            now=float(i),
        )


def target_core() -> ControllerCore:
    """A core in target mode at 30 % token reduction."""
    return ControllerCore(load_config(None, arms=ARMS, default_arm=1.0, target=TARGET))


def test_weights_carry_lambda() -> None:
    """In target mode the policies' token cost is λ; otherwise the configured one."""
    core = target_core()
    assert core.weights.token_cost_per_1k == core.config.reward.token_cost_per_1k
    core.set_lambda(0.5)
    assert core.weights.token_cost_per_1k == 0.5
    assert all(p.reward.token_cost_per_1k == 0.5 for p in core.build_policies(0.0))
    plain = ControllerCore(load_config(None, arms=ARMS, default_arm=1.0))
    assert plain.target is None
    assert reward_weights(plain.config) == plain.weights


def test_serving_the_reference_only_makes_tokens_dearer() -> None:
    """Everything served at the reference arm saves nothing: λ rises at the next publish."""
    core = target_core()
    core.build_policies(0.0)
    serve(core, 1, 200, 1.0, 1000)
    start = core.weights.token_cost_per_1k
    core.build_policies(300.0)
    assert core.target is not None
    assert core.target.controller.achieved == pytest.approx(0.0, abs=1.0)
    assert core.weights.token_cost_per_1k > start


def test_target_state_survives_a_checkpoint() -> None:
    """λ, the step rule's state and the tally come back from a JSON round trip."""
    core = target_core()
    core.build_policies(0.0)
    serve(core, 1, 200, 1.0, 1000)
    core.build_policies(300.0)
    state = json.loads(json.dumps(core.snapshot()))
    restored = target_core()
    restored.restore(state)
    assert restored.target is not None
    assert core.target is not None
    assert restored.target.snapshot() == core.target.snapshot()
    assert restored.weights == core.weights


def test_a_checkpoint_without_target_state_restores() -> None:
    """A checkpoint written before target mode (or with it off) restores, λ at its start."""
    plain = ControllerCore(load_config(None, arms=ARMS, default_arm=1.0))
    serve(plain, 1, 20, 1.0, 1000)
    state = json.loads(json.dumps(plain.snapshot()))
    assert "target" not in state
    restored = target_core()
    restored.restore(state)
    assert restored.weights.token_cost_per_1k == restored.config.reward.token_cost_per_1k


def test_a_damaged_target_state_is_refused() -> None:
    """A malformed target section fails the restore with ValueError (a corrupt checkpoint)."""
    core = target_core()
    state = core.snapshot()
    state["target"] = {"controller": {"lambda": "x"}}
    with pytest.raises(ValueError, match="lambda"):
        target_core().restore(state)


def test_a_lambda_taken_from_the_fleet_rebuilds_every_policy_without_new_data() -> None:
    """A replica not owning partition 0 gets λ by set_lambda: the next round rebuilds all.

    Publishing only segments that learned must not leave policies on the old weights
    (both target-mode replica tests timed out on exactly that).
    """
    core = target_core()
    serve(core, 1, 50, 1.0, 1000)
    first = {p.segment: p for p in core.build_policies(0.0)}
    assert first["s"].reward.token_cost_per_1k == core.config.reward.token_cost_per_1k
    assert core.build_policies(1.0) == []  # nothing learned, nothing moved
    core.set_lambda(0.5)
    rebuilt = {p.segment: p for p in core.build_policies(2.0)}
    assert set(rebuilt) == {"s", "*"}
    assert {p.reward.token_cost_per_1k for p in rebuilt.values()} == {0.5}


def test_the_reference_arm_keeps_a_share_while_no_control_group_measures_it() -> None:
    """Target mode measures against the reference arm: policies that leave it keep a share.

    With a control group serving the reference arm it is measured there, so no
    share is kept; outside target mode neither.
    """
    core = target_core()
    assert target_reference_floor(core.config) == core.config.target.reference_share > 0
    serve(core, 1, 400, 0.5, 100)
    core.set_lambda(5.0)  # tokens dear: the greedy arm moves off the reference arm
    (policy,) = [p for p in core.build_policies(1000.0) if p.segment == "s"]
    assert policy.greedy != 1.0
    assert dict(zip(policy.arms, policy.pmf, strict=True))[1.0] >= 0.03 - 1e-12

    controlled = load_config(
        None, arms=ARMS, default_arm=1.0, target=TARGET, control={"fraction": 0.05}
    )
    assert target_reference_floor(controlled) == 0.0
    elsewhere = load_config(
        None, arms=ARMS, default_arm=1.0, target=TARGET, control={"fraction": 0.05, "arm": 0.8}
    )
    assert target_reference_floor(elsewhere) == elsewhere.target.reference_share
    assert target_reference_floor(load_config(None, arms=ARMS, default_arm=1.0)) == 0.0
