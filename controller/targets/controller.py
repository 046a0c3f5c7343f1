"""The λ controller: state and step rule (stated in `controller.targets`). Pure."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stopbandit.controller.targets.measure import POINTS, Metric, Totals

if TYPE_CHECKING:
    from stopbandit.controller.config import TargetConfig

# Steps kept for plots and reports (about a day at one step per 10 s).
HISTORY_SIZE = 10_000

# Per-metric default gains (integral, proportional), in e-folds of λ per point of error.
# An e-fold of λ moves token reduction by some ten times more points than EM, so the EM
# budget steps more per point of error. No proportional term by default: with the one
# publish of delay between a step and its effect, k_p makes the loop unstable on steep
# plants (z² - (1 - s(k_i + k_p)) z - s·k_p has a root outside the unit circle once
# s(k_i + 2 k_p) > 2, s the plant's slope in points per e-fold), and a dual variable
# needs only the integral to meet its constraint on average.
DEFAULT_GAINS: dict[Metric, tuple[float, float]] = {
    "token_reduction": (0.02, 0.0),
    "em_drop_pts": (0.1, 0.0),
}


@dataclass(frozen=True)
class Gains:
    """The step rule's constants (see the module doc)."""

    integral: float
    proportional: float
    max_step: float
    lambda_min: float
    lambda_max: float
    interval_s: float
    min_interactions: float

    @classmethod
    def of(cls, config: TargetConfig) -> Gains:
        """The config's gains, the metric's defaults where unset."""
        integral, proportional = DEFAULT_GAINS[metric_of(config)]
        return cls(
            integral=config.integral_gain if config.integral_gain is not None else integral,
            proportional=(
                config.proportional_gain if config.proportional_gain is not None else proportional
            ),
            max_step=config.max_step,
            lambda_min=config.lambda_min,
            lambda_max=config.lambda_max,
            interval_s=config.interval_s,
            min_interactions=config.min_interactions,
        )


def metric_of(config: TargetConfig) -> Metric:
    """Which figure the config targets."""
    return "token_reduction" if config.token_reduction is not None else "em_drop_pts"


def target_points(config: TargetConfig) -> float:
    """The target, in points (the unit of `Totals.achieved`)."""
    if config.token_reduction is not None:
        return POINTS * config.token_reduction
    assert config.max_em_drop_pts is not None  # noqa: S101 - the config guarantees one
    return config.max_em_drop_pts


@dataclass(frozen=True)
class Step:
    """One update: when, the achieved value it measured, and the λ it set."""

    at_s: float
    achieved: float
    lambda_: float


@dataclass
class LambdaController:
    """λ and the state of its step rule: `update` with fleet-wide totals and the time.

    Attributes:
        metric: the targeted figure.
        target: its target, in points.
        gains: the step rule's constants.
        lambda_: the current token cost per 1k tokens.
        last_error: e_{t-1} (None before the first update: no proportional kick).
        last_totals: the totals at the last update (the interval starts there).
        last_update_s: the time of the last update (None before the first).
        achieved: the value measured at the last update.
        history: the last `HISTORY_SIZE` updates, for plots and reports.
    """

    metric: Metric
    target: float
    gains: Gains
    lambda_: float
    last_error: float | None = None
    last_totals: Totals | None = None
    last_update_s: float | None = None
    achieved: float | None = None
    updates: int = 0
    history: list[Step] = field(default_factory=list)

    @classmethod
    def of(cls, config: TargetConfig, initial: float) -> LambdaController:
        """A controller starting from `initial` (the configured token cost), clipped to bounds."""
        gains = Gains.of(config)
        return cls(
            metric=metric_of(config),
            target=target_points(config),
            gains=gains,
            lambda_=min(max(initial, gains.lambda_min), gains.lambda_max),
        )

    def update(self, totals: Totals, now: float) -> bool:
        """Take the fleet's cumulative totals at time `now`; True if λ was stepped.

        The first call only starts the interval. Totals that went backwards (a
        partition restored from an older checkpoint) restart it without a step.
        """
        if self.last_totals is None or self.last_update_s is None:
            self.last_totals, self.last_update_s = totals, now
            return False
        interval = totals - self.last_totals
        if interval.n < 0 or any(v < 0 for v in interval.values()):
            self.last_totals, self.last_update_s = totals, now
            return False
        if now - self.last_update_s < self.gains.interval_s:
            return False
        if interval.n < self.gains.min_interactions:
            return False
        achieved = interval.achieved(self.metric)
        if achieved is None:
            return False
        self.step(achieved, now)
        self.last_totals = totals
        return True

    def step(self, achieved: float, now: float) -> None:
        """Apply the step rule to one measured value (points) at time `now`."""
        gains = self.gains
        error = self.target - achieved
        change = gains.integral * error
        if self.last_error is not None:
            change += gains.proportional * (error - self.last_error)
        change = min(max(change, -gains.max_step), gains.max_step)
        log_lambda = math.log(self.lambda_) + change
        log_lambda = min(max(log_lambda, math.log(gains.lambda_min)), math.log(gains.lambda_max))
        self.lambda_ = math.exp(log_lambda)
        self.last_error = error
        self.last_update_s = now
        self.achieved = achieved
        self.updates += 1
        self.history.append(Step(at_s=now, achieved=achieved, lambda_=self.lambda_))
        if len(self.history) > HISTORY_SIZE:
            del self.history[: len(self.history) - HISTORY_SIZE]

    def snapshot(self) -> dict[str, Any]:
        """The state a restart needs, JSON-ready (history stays out: it is for plots)."""
        return {
            "metric": self.metric,
            "target": self.target,
            "lambda": self.lambda_,
            "last_error": self.last_error,
            "last_totals": None if self.last_totals is None else self.last_totals.to_dict(),
            "last_update_s": self.last_update_s,
            "achieved": self.achieved,
            "updates": self.updates,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a `snapshot`; a snapshot of another metric or target keeps only its λ.

        λ is clipped to this config's bounds. A changed target restarts the
        interval and drops e_{t-1}, since the old error meant another target.

        Raises:
            ValueError: the snapshot's λ is missing, not a number, or not finite and positive.
        """
        try:
            value = float(state["lambda"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"target state: lambda: {error!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"target state: lambda must be finite and > 0, got {value}")
        self.lambda_ = min(max(value, self.gains.lambda_min), self.gains.lambda_max)
        if state.get("metric") != self.metric or state.get("target") != self.target:
            return
        last_error = state.get("last_error")
        self.last_error = None if last_error is None else float(last_error)
        totals = state.get("last_totals")
        self.last_totals = None if totals is None else Totals.from_dict(totals)
        last_update_s = state.get("last_update_s")
        self.last_update_s = None if last_update_s is None else float(last_update_s)
        achieved = state.get("achieved")
        self.achieved = None if achieved is None else float(achieved)
        self.updates = int(state.get("updates", 0))
