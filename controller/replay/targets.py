"""The policies replay evaluates, as per-interaction target pmfs.

- `logged`: the policy that wrote the log (evaluated on-policy).
- `fixed:<threshold>`: one threshold everywhere.
- `learned`: what the daemon would have learned from this log, each
  interaction scored with the policy built before it (`controller.replay.feed`).
- `sweep:<token_cost_per_1k>` (or `sweep:em_weight=<w>`): for one point of a
  sweep of reward weights, the greedy arm per segment from the final learned
  estimates under that weight. Together they trace the EM-tokens frontier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from stopbandit.controller.config import RewardConfig
from stopbandit.streams.arms import arm_label

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from stopbandit.controller.core import ControllerCore
    from stopbandit.controller.replay.feed import ReplayLog

SweepField = Literal["token_cost_per_1k", "em_weight"]
SWEEP_FIELDS: tuple[SweepField, ...] = ("token_cost_per_1k", "em_weight")


@dataclass(frozen=True)
class Target:
    """A policy to evaluate on the log.

    Attributes:
        name: `logged`, `fixed:<threshold>`, `learned` or `sweep:<value>`.
        kind: `logged`, `fixed`, `learned` or `sweep`.
        pmf: The target's pmf per interaction, shape (n, K); None for `logged`,
            which is evaluated on-policy from the logged propensities.
        greedy: For fixed and sweep targets, the threshold played per segment.
        weights: For sweep targets, the reward weights that chose it.
    """

    name: str
    kind: str
    pmf: NDArray[np.float64] | None
    greedy: dict[str, float] | None = None
    weights: RewardConfig | None = None


@dataclass(frozen=True)
class Sweep:
    """A sweep of one reward weight: `field=start:stop:points`, end points included."""

    field: SweepField
    values: tuple[float, ...]

    @classmethod
    def parse(cls, text: str) -> Sweep:
        """Parse `token_cost_per_1k=0.005:0.05:10` (or one value, `token_cost_per_1k=0.02`).

        Raises:
            ValueError: an unknown field, a malformed range, or fewer than one point.
        """
        name, sep, spec = text.partition("=")
        if not sep or name not in SWEEP_FIELDS:
            raise ValueError(
                f"--sweep: expected FIELD=START:STOP:POINTS with FIELD in {SWEEP_FIELDS}"
            )
        try:
            values = _sweep_values(spec)
        except ValueError as error:
            raise ValueError(f"--sweep {text!r}: {error}") from None
        if any(not np.isfinite(v) or v < 0.0 for v in values):
            raise ValueError(f"--sweep {text!r}: values must be finite and >= 0")
        if name == "em_weight" and any(v <= 0.0 for v in values):
            raise ValueError(f"--sweep {text!r}: em_weight must be > 0")
        field: SweepField = "em_weight" if name == "em_weight" else "token_cost_per_1k"
        return cls(field=field, values=values)

    def weights(self, base: RewardConfig) -> list[tuple[str, RewardConfig]]:
        """(policy name, weights) per point; the other weight stays as configured."""
        points = []
        for value in self.values:
            weights = base.model_copy(update={self.field: float(value)})
            label = (
                f"{value:.6g}" if self.field == "token_cost_per_1k" else f"em_weight={value:.6g}"
            )
            points.append((f"sweep:{label}", weights))
        return points


def _sweep_values(spec: str) -> tuple[float, ...]:
    parts = spec.split(":")
    if len(parts) == 1:
        return (float(parts[0]),)
    if len(parts) != 3:  # noqa: PLR2004
        raise ValueError("expected START:STOP:POINTS")
    start, stop, points = float(parts[0]), float(parts[1]), int(parts[2])
    if points < 1:
        raise ValueError("POINTS must be >= 1")
    return tuple(float(v) for v in np.linspace(start, stop, points))


def one_hot_by_segment(log: ReplayLog, arm_by_segment: NDArray[np.int64]) -> NDArray[np.float64]:
    """The pmf matrix of a deterministic policy playing `arm_by_segment[s]` in segment s."""
    pmf = np.zeros((log.n, len(log.arms)))
    pmf[np.arange(log.n), arm_by_segment[log.segment]] = 1.0
    return pmf


def logged_target() -> Target:
    """The logging policy itself."""
    return Target(name="logged", kind="logged", pmf=None)


def fixed_targets(log: ReplayLog) -> list[Target]:
    """One target per configured threshold, played in every segment."""
    targets = []
    for k, threshold in enumerate(log.arms):
        arms = np.full(len(log.segments), k, dtype=np.int64)
        targets.append(
            Target(
                name=f"fixed:{arm_label(threshold)}",
                kind="fixed",
                pmf=one_hot_by_segment(log, arms),
                greedy=dict.fromkeys(log.segments, threshold),
            )
        )
    return targets


def learned_target(log: ReplayLog) -> Target:
    """The progressively learned policy (requires a replay with learning)."""
    if log.learned_pmf is None:
        raise ValueError("the log was replayed without learning: no learned policy")
    return Target(name="learned", kind="learned", pmf=log.learned_pmf)


def greedy_under(core: ControllerCore, weights: RewardConfig) -> dict[str, float]:
    """The greedy threshold per segment the core's final estimates give under `weights`.

    The core's own policy builder decides, with the reward computed under
    `weights` instead of the configured ones: the policy the daemon would
    publish now if it were configured with those weights.
    """
    return {
        segment: core.config.arms[core.builder.decide(beliefs, weights, segment=segment).greedy]
        for segment, beliefs in core.learner.estimates_all().items()
    }


def sweep_targets(log: ReplayLog, sweep: Sweep) -> list[Target]:
    """One deterministic target per point of the sweep (requires a replay with learning)."""
    if log.core is None:
        raise ValueError("the log was replayed without learning: no estimates to sweep")
    base = RewardConfig.model_validate(log.core.config.reward.model_dump())
    targets = []
    for name, weights in sweep.weights(base):
        greedy = greedy_under(log.core, weights)
        arms = np.array(
            [log.arms.index(greedy[segment]) for segment in log.segments], dtype=np.int64
        )
        targets.append(
            Target(
                name=name,
                kind="sweep",
                pmf=one_hot_by_segment(log, arms),
                greedy={segment: greedy[segment] for segment in log.segments},
                weights=weights,
            )
        )
    return targets
