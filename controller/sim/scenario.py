"""Simulated fleets (the scenario format of docs/wire-contract.md) and their ground truth.

The controller never reads these; the simulator, the fleet command and the
benchmarks do. `Truth` is the scenario's state at one moment (after the
drift events applied so far): expected EM, tokens and reward of every
(segment, arm), the oracle's arms, and traffic shares.

With the `token_budget` knob (SCHEMA 1.1) the arms are thinking-token
budgets, and a request's tokens are its natural length (lognormal, mean
`base_tokens`, cv `token_cv`) cut at the budget: min(budget, natural). The
mean that gives at each budget is computed (`budget_token_fractions`), and a
curve's token fractions must say it (within `BUDGET_FRACTION_TOLERANCE`), so
a file never claims savings its own token model cannot produce.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stopbandit.policies.reward import reward
from stopbandit.streams.arms import DEFAULT_KNOB, Arms, Knob, arm_label, arm_problem
from stopbandit.streams.events import ContextValue  # noqa: TC001 - pydantic resolves it at runtime

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from stopbandit.controller.config import RewardConfig

SHIPPED_DIR = Path(__file__).parent / "scenarios"
DEFAULT_SCENARIO = SHIPPED_DIR / "mixed-reasoning.yaml"
# How far a budget curve's token fraction may be from min(budget, natural)'s (rounding).
BUDGET_FRACTION_TOLERANCE = 0.01

CurvePoint = tuple[
    Annotated[float, Field(ge=0.0, allow_inf_nan=False)],
    Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)],
]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TraceSpec(_Strict):
    """Counterfactual traces (SCHEMA 1.1): which share of requests sends them, how alike.

    Attributes:
        share: fraction of requests whose node sends `counterfactual`.
        coupling: correlation of one request's latent draws at any two arms
            (Gaussian copula; 1: one latent for all arms, 0: independent arms).
    """

    share: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = 1.0
    coupling: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = 0.8


class SegmentSpec(_Strict):
    """One traffic segment: its features, traffic, and response curve."""

    key: str
    features: dict[str, ContextValue] = Field(default_factory=dict)
    traffic: Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
    base_tokens: Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
    token_cv: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 0.5
    curve: dict[str, CurvePoint]
    trace: TraceSpec | None = None


class DriftSpec(_Strict):
    """A change applied when the run reaches `at` interactions."""

    at: Annotated[int, Field(ge=0)]
    segment: str
    curve: dict[str, CurvePoint] | None = None
    traffic: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None = None


class Scenario(_Strict):
    """A simulated fleet."""

    name: str
    description: str = ""
    knob: Knob = DEFAULT_KNOB
    arms: list[float]
    reference_arm: float
    segments: list[SegmentSpec]
    drift: list[DriftSpec] = Field(default_factory=list)
    trace: TraceSpec | None = None

    def with_trace(self, share: float | None, coupling: float | None) -> Scenario:
        """This scenario with every segment's trace share and/or coupling overridden."""
        if share is None and coupling is None:
            return self
        segments = []
        for segment in self.segments:
            trace = segment.trace or self.trace or TraceSpec(share=0.0)
            update = {"share": share, "coupling": coupling}
            trace = trace.model_copy(update={k: v for k, v in update.items() if v is not None})
            segments.append(segment.model_copy(update={"trace": trace}))
        return self.model_copy(update={"segments": segments, "trace": None})

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        keys = {s.key for s in self.segments}
        if len(keys) != len(self.segments):
            raise ValueError("segments: keys must be unique")
        problem = arm_problem(self.knob, self.arms)
        if problem is not None:
            raise ValueError(f"{problem[0]}: {problem[1]}")
        if Arms(self.arms).index(self.reference_arm) is None:
            raise ValueError("reference_arm: must be one of the arms")
        if self.knob == "token_budget":
            self._budget_fractions_hold()
        curves = [(s.key, s.curve) for s in self.segments]
        curves += [(d.segment, d.curve) for d in self.drift if d.curve is not None]
        for key, curve in curves:
            points = {float(t) for t in curve}
            if points != {float(a) for a in self.arms}:
                raise ValueError(f"curve of {key}: needs exactly one point per arm")
        for d in self.drift:
            if d.segment not in keys:
                raise ValueError(f"drift: unknown segment {d.segment!r}")
        if sum(s.traffic for s in self.segments) <= 0.0:
            raise ValueError("segments: total traffic must be positive")
        return self

    def _budget_fractions_hold(self) -> None:
        by_key = {s.key: s for s in self.segments}
        curves = [(s.key, s.curve) for s in self.segments]
        curves += [(d.segment, d.curve) for d in self.drift if d.curve is not None]
        for key, curve in curves:
            segment = by_key.get(key)
            if segment is None:
                continue  # the drift check names it
            expected = budget_token_fractions(self.arms, segment.base_tokens, segment.token_cv)
            by_arm = {float(t): point for t, point in curve.items()}
            for arm, fraction in zip(self.arms, expected, strict=True):
                given = by_arm[arm][0]
                if abs(given - fraction) > BUDGET_FRACTION_TOLERANCE:
                    raise ValueError(
                        f"curve of {key}: token fraction {given:g} at budget {arm_label(arm)} "
                        f"is not what min(budget, natural length) gives ({fraction:.3f})"
                    )


def budget_token_fractions(
    budgets: list[float], base_tokens: float, token_cv: float
) -> NDArray[np.float64]:
    """E[min(budget, N)] / base_tokens per budget, N lognormal with mean base_tokens and cv.

    The natural length is the simulator's: base_tokens times the request's lognormal noise
    (mean 1), so this is the exact mean tokens of a segment at each budget.
    """
    if token_cv <= 0.0:
        return np.array([min(b, base_tokens) / base_tokens for b in budgets])
    sigma = math.sqrt(math.log1p(token_cv**2))
    mu = math.log(base_tokens) - sigma**2 / 2.0
    normal = statistics.NormalDist()
    fractions = []
    for budget in budgets:
        z = (math.log(budget) - mu) / sigma
        below = base_tokens * normal.cdf(z - sigma)  # E[N; N < budget]
        fractions.append((below + budget * (1.0 - normal.cdf(z))) / base_tokens)
    return np.array(fractions)


def scenario_path(name: Path) -> Path:
    """A scenario file: `name` itself, or the shipped scenario of that name (`token-budget`)."""
    shipped = SHIPPED_DIR / f"{name}.yaml"
    if not name.exists() and name.parent == Path() and shipped.exists():
        return shipped
    return name


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file (a path, or the name of a shipped one).

    Raises:
        ValueError: unreadable or invalid, with the field and the reason.
    """
    path = scenario_path(path)
    try:
        return Scenario.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"scenario {path}: cannot read ({error})") from None
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "scenario"
        raise ValueError(f"scenario {path}: {where}: {first['msg']}") from None


def _curve_arrays(
    curve: dict[str, CurvePoint], arms: list[float]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    by_arm = {float(t): point for t, point in curve.items()}
    fractions = np.array([by_arm[a][0] for a in arms])
    em = np.array([by_arm[a][1] for a in arms])
    return fractions, em


class Truth:
    """The scenario's state at one moment; `apply` moves it through drift events."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.knob = scenario.knob
        self.arms = list(scenario.arms)
        self.keys = [s.key for s in scenario.segments]
        self.features = [dict(s.features) for s in scenario.segments]
        self.base_tokens = np.array([s.base_tokens for s in scenario.segments])
        self.token_cv = np.array([s.token_cv for s in scenario.segments])
        self.traffic = np.array([s.traffic for s in scenario.segments])
        pairs = [self._arrays(k, s.curve) for k, s in enumerate(scenario.segments)]
        self.token_fraction = np.stack([p[0] for p in pairs])
        self.em = np.stack([p[1] for p in pairs])
        self.arm_table = Arms(self.arms)
        traces = [s.trace or scenario.trace for s in scenario.segments]
        # Per segment: the share of requests sending a trace, and the copula's coupling;
        # None where no segment says anything of traces (outcomes drawn arm by arm).
        self.traced = any(trace is not None and trace.share > 0.0 for trace in traces)
        self.trace_share = [trace.share if trace else 0.0 for trace in traces]
        self.coupling = [trace.coupling if trace else 0.0 for trace in traces]
        reference = self.arm_table.index(scenario.reference_arm)
        assert reference is not None  # noqa: S101 - the scenario's validator checked it
        self.reference = reference

    def apply(self, drift: DriftSpec) -> None:
        """Apply one drift event."""
        index = self.keys.index(drift.segment)
        if drift.curve is not None:
            fractions, em = self._arrays(index, drift.curve)
            self.token_fraction = self.token_fraction.copy()
            self.em = self.em.copy()
            self.token_fraction[index], self.em[index] = fractions, em
        if drift.traffic is not None:
            self.traffic = self.traffic.copy()
            self.traffic[index] = drift.traffic

    def _arrays(
        self, segment: int, curve: dict[str, CurvePoint]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        fractions, em = _curve_arrays(curve, self.arms)
        if self.knob == "token_budget":
            # The exact mean of the token model; the file's (checked close) is rounded.
            spec = self.scenario.segments[segment]
            fractions = budget_token_fractions(self.arms, spec.base_tokens, spec.token_cv)
        return fractions, em

    @property
    def share(self) -> NDArray[np.float64]:
        """Traffic share of each segment (sums to 1)."""
        return np.asarray(self.traffic / self.traffic.sum(), dtype=np.float64)

    @property
    def tokens(self) -> NDArray[np.float64]:
        """Expected tokens per (segment, arm)."""
        return np.asarray(self.base_tokens[:, None] * self.token_fraction, dtype=np.float64)

    def rewards(self, weights: RewardConfig) -> NDArray[np.float64]:
        """Expected reward per (segment, arm)."""
        return np.asarray(reward(self.em, self.tokens, weights), dtype=np.float64)

    def oracle_arms(self, weights: RewardConfig) -> NDArray[np.int64]:
        """Best arm index per segment."""
        return np.asarray(np.argmax(self.rewards(weights), axis=1), dtype=np.int64)
