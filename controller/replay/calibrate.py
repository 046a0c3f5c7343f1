"""`replay --target token_reduction=0.30`: the λ that meets a target on a log, offline.

As RouteLLM calibrates its router's threshold to a cost target on a sample of
queries, replay searches the token cost λ for the one whose policy meets the
target on the log. For each λ the policy is what the daemon would publish
from the replay's final estimates (`PolicyBuilder.decide` of every segment
under weights with token_cost_per_1k = λ: the one policy path, exploration
included, and the control group served at its arm, since the online target
counts every request served), and the figure it achieves is estimated from
the same estimates:

    token_reduction(λ) = 100 · (1 - Σ_s w_s Σ_k pmf_s(λ)_k tokens_s,k / Σ_s w_s tokens_s,ref)
    em_drop_pts(λ)     = 100 · Σ_s w_s (em_s,ref - Σ_k pmf_s(λ)_k em_s,k)

with w_s each segment's traffic, decayed with the learner's half-life so the
mix is the log's recent one, as the daemon's interval measure sees it. The
search: the figure on a log-spaced grid over [λ_min, λ_max], then bisection
inside the first bracket where it crosses the target (from below for a token
target: the least λ that saves enough loses the least EM; the largest λ
within an EM budget for an EM target). A target the grid never reaches
returns the bound, marked unreachable.

The calibrated policy is also evaluated off-policy like every other target
(`target:<metric>=<value>`), so its tokens and EM come with the estimators'
intervals next to the model's figure.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from stopbandit.controller.config import TargetConfig
from stopbandit.controller.replay.targets import Target
from stopbandit.controller.targets import POINTS, metric_of, target_points
from stopbandit.streams.events import RewardWeights

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from stopbandit.controller.core import ControllerCore
    from stopbandit.controller.replay.feed import ReplayLog
    from stopbandit.controller.targets import Metric

GRID_POINTS = 60
BISECTIONS = 30
TARGET_FIELDS = ("token_reduction", "max_em_drop_pts")


def add_target_argument(parser: argparse.ArgumentParser) -> None:
    """`--target FIELD=VALUE` on the replay command."""
    parser.add_argument(
        "--target",
        type=_target_text,
        metavar="FIELD=VALUE",
        help="calibrate the token cost to a target on the log: token_reduction=0.30 or "
        "max_em_drop_pts=1 (prints λ and the per-segment arms it gives)",
    )


def _target_text(text: str) -> str:
    # Checked when the arguments are parsed, before a long replay; kept as text.
    try:
        parse_target(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def parse_target(text: str, base: TargetConfig | None = None) -> TargetConfig:
    """`token_reduction=0.30` as a target section (bounds from `base`, the config's).

    Raises:
        ValueError: an unknown field, a value that is not a number or out of range.
    """
    name, sep, value = text.partition("=")
    if not sep or name not in TARGET_FIELDS:
        raise ValueError(f"--target: expected token_reduction=X or max_em_drop_pts=X, got {text!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"--target {text!r}: {value!r} is not a number") from None
    bounds = {} if base is None else {"lambda_min": base.lambda_min, "lambda_max": base.lambda_max}
    try:
        return TargetConfig.model_validate({name: number, **bounds})
    except ValidationError as error:
        reason = "; ".join(str(e["msg"]) for e in error.errors(include_url=False))
        raise ValueError(f"--target {text!r}: {reason}") from None


@dataclass(frozen=True)
class Calibration:
    """The λ that meets the target on the log, and the policy it gives.

    Attributes:
        metric: the targeted figure.
        target: its target, in points.
        lambda_: the calibrated token_cost_per_1k.
        achieved: the figure the estimates give at λ, in points.
        reachable: whether some λ in the bounds meets the target.
        greedy: per segment, the greedy threshold at λ.
        pmf: per segment, the pmf at λ.
        curve: (λ, achieved) on the search grid, for the report's plot.
        online_path: (time, λ, achieved) of every step the replay's own core took, when
            the replay ran in target mode (empty otherwise).
    """

    metric: Metric
    target: float
    lambda_: float
    achieved: float
    reachable: bool
    greedy: dict[str, float]
    pmf: dict[str, list[float]]
    curve: list[tuple[float, float]]
    online_path: list[tuple[float, ...]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The calibrated policy's name among replay's targets."""
        return f"target:{self.metric}={self.target:g}"

    def as_target(self, log: ReplayLog) -> Target:
        """The calibrated policy as a target of the off-policy evaluation."""
        rows = np.array([self.pmf[s] for s in log.segments], dtype=np.float64)
        return Target(
            name=self.name,
            kind="target",
            pmf=rows[log.segment],
            greedy=dict(self.greedy),
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready, for the replay document's `target` entry."""
        return {
            "name": self.name,
            "metric": self.metric,
            "target": self.target,
            "lambda": self.lambda_,
            "achieved": self.achieved,
            "reachable": self.reachable,
            "greedy": self.greedy,
            "pmf": self.pmf,
            "curve": [list(point) for point in self.curve],
            "online_path": [list(row) for row in self.online_path],
        }


def recent_traffic(log: ReplayLog, half_life: float) -> dict[str, float]:
    """Each segment's share of the log's traffic, decayed by `half_life` interactions."""
    if log.n == 0:
        return {}
    age = np.arange(log.n - 1, -1, -1, dtype=np.float64)
    weight = np.exp2(-age / half_life)
    totals = np.bincount(log.segment, weights=weight, minlength=len(log.segments))
    share = totals / totals.sum()
    return {s: float(share[i]) for i, s in enumerate(log.segments)}


def _achieved(
    core: ControllerCore, traffic: dict[str, float], metric: Metric, value: float
) -> tuple[float, dict[str, NDArray[np.float64]]]:
    reference = core.config.arm_index(core.config.reference_arm)
    assert reference is not None  # noqa: S101 - the config model guarantees it
    weights = RewardWeights(em_weight=core.config.reward.em_weight, token_cost_per_1k=value)
    # The control group is served at its arm whatever the pmf (policies/sampling.py).
    fraction = core.config.control.fraction
    control = np.zeros(len(core.config.arms))
    control_index = core.config.arm_index(core.config.control_arm)
    if control_index is not None:
        control[control_index] = 1.0
    pmfs: dict[str, NDArray[np.float64]] = {}
    played = baseline = 0.0
    for segment, beliefs in core.learner.estimates_all().items():
        share = traffic.get(segment, 0.0)
        decided = core.builder.decide(beliefs, weights, segment=segment)
        pmf = np.asarray(decided.pmf, dtype=np.float64)
        pmfs[segment] = pmf
        pmf = (1.0 - fraction) * pmf + fraction * control
        if metric == "token_reduction":
            played += share * float(pmf @ beliefs.tokens)
            baseline += share * float(beliefs.tokens[reference])
        else:
            played += share * float(pmf @ beliefs.em)
            baseline += share * float(beliefs.em[reference])
    if metric == "token_reduction":
        achieved = POINTS * (1.0 - played / baseline) if baseline > 0 else 0.0
    else:
        achieved = POINTS * (baseline - played)
    return achieved, pmfs


def calibrate(core: ControllerCore, traffic: dict[str, float], target: TargetConfig) -> Calibration:
    """Search λ in the target's bounds for the policy that meets it (see the module doc).

    Raises:
        ValueError: the core has learned no segment.
    """
    if not core.learner.stats:
        raise ValueError("--target: the log taught no segment; nothing to calibrate")
    metric, goal = metric_of(target), target_points(target)
    grid = np.geomspace(target.lambda_min, target.lambda_max, GRID_POINTS)
    curve = [(float(v), _achieved(core, traffic, metric, float(v))[0]) for v in grid]
    # Both figures rise with λ; the token target wants the least λ at or above it, the
    # EM budget the largest λ at or below it.
    if metric == "token_reduction":
        above = [i for i, (_, a) in enumerate(curve) if a >= goal]
        index = above[0] if above else None
        low_i = None if index in (None, 0) else index - 1
        reachable = index is not None
        fallback = grid[-1] if index is None else grid[0]
    else:
        within = [i for i, (_, a) in enumerate(curve) if a <= goal]
        index = within[-1] if within else None
        low_i = None if index in (None, len(grid) - 1) else index
        reachable = index is not None
        fallback = grid[0] if index is None else grid[-1]
    if low_i is None:
        value = float(fallback)
    else:
        value = _bisect(core, traffic, metric, goal, (float(grid[low_i]), float(grid[low_i + 1])))
    achieved, pmfs = _achieved(core, traffic, metric, value)
    arms = core.config.arms
    return Calibration(
        metric=metric,
        target=goal,
        lambda_=value,
        achieved=achieved,
        reachable=reachable,
        greedy={s: arms[int(np.argmax(p))] for s, p in pmfs.items()},
        pmf={s: [round(float(x), 6) for x in p] for s, p in pmfs.items()},
        curve=curve,
    )


def _bisect(
    core: ControllerCore,
    traffic: dict[str, float],
    metric: Metric,
    goal: float,
    bracket: tuple[float, float],
) -> float:
    # In log λ, below `low` the figure is under the goal and at `high` at or over it (or the
    # reverse for the EM budget: the invariant is only which side each end is on).
    low, high = bracket
    low_below = _achieved(core, traffic, metric, low)[0] < goal
    for _ in range(BISECTIONS):
        middle = math.sqrt(low * high)
        if (_achieved(core, traffic, metric, middle)[0] < goal) == low_below:
            low = middle
        else:
            high = middle
    # The token target takes the end that meets it; the EM budget the end within it.
    return high if metric == "token_reduction" else low


def calibrate_log(log: ReplayLog, text: str) -> Calibration:
    """Calibrate `--target TEXT` on a replayed log (it must have been replayed with learning).

    Raises:
        ValueError: a bad target, or a log replayed without learning.
    """
    if log.core is None:
        raise ValueError("--target needs learning (drop --no-learned)")
    config = log.core.config
    target = parse_target(text, config.target if config.target.enabled else None)
    calibration = calibrate(log.core, recent_traffic(log, config.learner.half_life), target)
    if log.core.target is not None:  # the replay itself ran in target mode: its λ's path
        path = [tuple(row) for row in log.core.target.report()["path"]]
        calibration = replace(calibration, online_path=path)
    return calibration


def summary_lines(calibration: Calibration) -> list[str]:
    """What a terminal prints: λ, the achieved figure, and the arms per segment."""
    unit = "token reduction" if calibration.metric == "token_reduction" else "EM drop"
    reach = "" if calibration.reachable else " (not reachable within the λ bounds: at the bound)"
    lines = [
        (
            f"target {unit} {calibration.target:.2f} pts: token_cost_per_1k λ = "
            f"{calibration.lambda_:.6g}, estimated {calibration.achieved:.2f} pts{reach}"
        ),
    ]
    for segment, arm in calibration.greedy.items():
        pmf = " ".join(f"{p:.2f}" for p in calibration.pmf[segment])
        lines.append(f"  {segment}: greedy {arm:g}  pmf [{pmf}]")
    return lines
