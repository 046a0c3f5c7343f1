"""The λ controller: its step rule, bounds, restarts, and convergence on monotone plants."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stopbandit.controller.config import TargetConfig
from stopbandit.controller.targets import LambdaController, Totals


def controller(initial: float = 0.02, **fields: float) -> LambdaController:
    """A token-reduction controller at 30 %, λ starting at `initial`."""
    return LambdaController.of(TargetConfig(token_reduction=0.30, **fields), initial)


def totals_for(n: float, reduction_pts: float) -> Totals:
    """Sums of `n` requests whose token reduction is `reduction_pts`."""
    return Totals(n=n, tokens=n * (100.0 - reduction_pts), reference_tokens=n * 100.0)


def test_step_follows_the_stated_rule() -> None:
    """Δ = k_i·e + k_p·(e - e_prev), applied to log λ, as the module documents."""
    c = controller(0.02, integral_gain=0.05, proportional_gain=0.1, max_step=1.0)
    c.step(20.0, 0.0)  # e = 10: no previous error, no proportional kick
    assert c.lambda_ == pytest.approx(0.02 * math.exp(0.05 * 10))
    c.step(25.0, 1.0)  # e = 5: 0.05·5 + 0.1·(5 - 10) = -0.25
    assert c.lambda_ == pytest.approx(0.02 * math.exp(0.5 - 0.25))


def test_steps_are_clipped_and_lambda_stays_in_bounds() -> None:
    """A huge error moves log λ by max_step at most, and λ never leaves [λ_min, λ_max]."""
    c = controller(0.02, max_step=0.1, lambda_min=0.01, lambda_max=0.03)
    c.step(-1000.0, 0.0)
    assert c.lambda_ == pytest.approx(0.02 * math.exp(0.1))
    for t in range(1, 20):
        c.step(-1000.0, float(t))
    assert c.lambda_ == pytest.approx(0.03)
    for t in range(20, 60):
        c.step(1000.0, float(t))
    assert c.lambda_ == pytest.approx(0.01)


def test_update_waits_for_interval_and_interactions() -> None:
    """The first totals start the interval; a step needs interval_s and min_interactions."""
    c = controller(interval_s=10.0, min_interactions=100)
    assert not c.update(totals_for(0, 0), 0.0)
    assert not c.update(totals_for(1000, 10), 5.0)  # too soon
    assert not c.update(totals_for(50, 10), 20.0)  # too few requests since the start
    assert c.update(totals_for(1000, 10), 20.0)
    assert c.achieved == pytest.approx(10.0)
    assert c.lambda_ > 0.02  # 10 % achieved against 30 %: tokens must cost more


def test_interval_is_measured_from_differences() -> None:
    """The achieved value is the interval's, not the cumulative one."""
    c = controller(interval_s=1.0, min_interactions=1)
    c.update(totals_for(1000, 0), 0.0)
    c.update(totals_for(1000, 0) + totals_for(1000, 40), 2.0)
    assert c.achieved == pytest.approx(40.0)


def test_totals_going_backwards_restart_the_interval() -> None:
    """A partition restored from an older checkpoint makes sums shrink: no step on that."""
    c = controller(interval_s=1.0, min_interactions=1)
    c.update(totals_for(1000, 10), 0.0)
    assert not c.update(totals_for(500, 10), 5.0)
    assert c.lambda_ == 0.02
    assert c.last_totals == totals_for(500, 10)


def test_em_drop_metric() -> None:
    """EM drop in points against the reference; λ falls when the drop exceeds the budget."""
    c = LambdaController.of(TargetConfig(max_em_drop_pts=1.0, interval_s=1.0), 0.05)
    assert c.metric == "em_drop_pts"
    c.update(Totals(), 0.0)
    c.update(Totals(n=1000, em=880, reference_em=900, tokens=1, reference_tokens=2), 2.0)
    assert c.achieved == pytest.approx(2.0)
    assert c.lambda_ < 0.05


def test_snapshot_restore_round_trip() -> None:
    """A restarted controller continues where the snapshot left it."""
    c = controller(interval_s=1.0, min_interactions=1)
    c.update(totals_for(1000, 10), 0.0)
    c.update(totals_for(2000, 10), 2.0)
    restarted = controller()
    restarted.restore(c.snapshot())
    assert restarted.snapshot() == c.snapshot()


def test_restore_under_another_target_keeps_only_lambda() -> None:
    """A changed target keeps λ (clipped to the new bounds) and restarts the interval."""
    c = controller(interval_s=1.0, min_interactions=1)
    c.update(totals_for(1000, 10), 0.0)
    c.update(totals_for(2000, 10), 2.0)
    other = LambdaController.of(TargetConfig(token_reduction=0.4, lambda_max=0.021), 0.01)
    other.restore(c.snapshot())
    assert other.lambda_ == pytest.approx(min(c.lambda_, 0.021))
    assert other.last_totals is None
    assert other.last_error is None


@pytest.mark.parametrize(
    "state",
    [{}, {"lambda": "x"}, {"lambda": -1.0}, {"lambda": float("nan")}, {"lambda": 0.0}],
)
def test_restore_rejects_bad_lambda(state: dict[str, object]) -> None:
    """A snapshot without a usable λ is refused with ValueError."""
    with pytest.raises(ValueError, match="lambda"):
        controller().restore(state)


@given(
    initial=st.floats(1e-4, 10.0),
    achieved=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50),
    max_step=st.floats(0.01, 2.0),
)
def test_lambda_positive_and_steps_bounded(
    initial: float, achieved: list[float], max_step: float
) -> None:
    """Whatever is measured, λ stays in [λ_min, λ_max] and no step exceeds e^max_step."""
    c = controller(initial, max_step=max_step)
    for t, value in enumerate(achieved):
        before = c.lambda_
        c.step(value, float(t))
        assert c.gains.lambda_min * (1 - 1e-12) <= c.lambda_ <= c.gains.lambda_max * (1 + 1e-12)
        assert abs(math.log(c.lambda_) - math.log(before)) <= max_step + 1e-9


@settings(max_examples=60, deadline=None)
@given(
    scale=st.floats(0.003, 1.0),
    steepness=st.floats(0.5, 2.0),
    target=st.floats(0.15, 0.75),
    initial=st.floats(1e-3, 1.0),
)
def test_converges_on_a_monotone_plant(
    scale: float, steepness: float, target: float, initial: float
) -> None:
    """On reduction(λ) = 100·(1 - 1/(1 + (λ/scale)^steepness)), λ settles where it meets the target.

    The plant rises monotonically with λ (up to 50 points per e-fold, where the
    default integral gain keeps s·k_i below 2); each step sees the reduction the
    previous λ produced, as the daemon does.
    """
    c = LambdaController.of(
        TargetConfig(token_reduction=target, interval_s=1.0, min_interactions=1), initial
    )

    def plant(value: float) -> float:
        return 100.0 * (1.0 - 1.0 / (1.0 + (value / scale) ** steepness))

    for t in range(400):
        c.step(plant(c.lambda_), float(t))
    assert plant(c.lambda_) == pytest.approx(100.0 * target, abs=0.5)
