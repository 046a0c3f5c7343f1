"""Off-policy evaluation of replay's targets: EM, tokens and reward, overall and per segment.

Every target is scored with IPS, SNIPS and cross-fitted DR (`controller.ope`)
on the logged propensities, for three outcomes: EM, tokens, and the reward
computed per row from them under the configured weights (so its interval
carries their covariance). One `fold_assignment` serves every DR call, so
the reward model q̂ is fitted once per outcome and shared by all targets
and segments. The logged policy is evaluated on-policy (w = 1): IPS and
SNIPS are the sample mean; DR uses the logged pmfs, when decisions carry them.

Beyond the estimators' own warnings (low ESS, arms never logged), replay
checks support with the logged pmfs: the share of a target's mass on arms
the logging policy gave zero probability, where IPS and SNIPS see nothing
and DR rests on its reward model alone.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from controller.ope import (
    Estimate,
    cross_fit,
    doubly_robust,
    dr_terms,
    fold_assignment,
    ips,
    snips,
)
from controller.ope.intervals import diagnose, wald_estimate
from controller.reward import reward

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from controller.config import RewardConfig
    from controller.replay.feed import ReplayLog
    from controller.replay.targets import Target

OUTCOMES = ("em", "tokens", "reward")
ESTIMATORS = ("ips", "snips", "dr")
DEFAULT_FOLDS = 5
_SUPPORT_TOLERANCE = 1e-9
_GROUP = re.compile(r"group (\d+)")


@dataclass(frozen=True)
class PolicyEstimate:
    """One target, one estimator, one scope (overall or a segment): EM, tokens and reward.

    Attributes:
        name: The target's name (`logged`, `fixed:0.95`, `learned`, `sweep:0.02`).
        kind: The target's kind.
        estimator: `ips`, `snips` or `dr`.
        em: Estimate of expected EM.
        tokens: Estimate of expected tokens.
        reward: Estimate of expected reward under the configured weights.
        support: Share of the target's mass on arms the logging policy could
            draw, over rows whose decision carried a pmf; None when none did.
        warnings: The estimators' warnings and replay's support warnings.
    """

    name: str
    kind: str
    estimator: str
    em: Estimate
    tokens: Estimate
    reward: Estimate
    support: float | None
    warnings: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The JSON object of one evaluated policy (NaN and infinities become null)."""
        document: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "estimator": self.estimator,
            "reward": self.reward.value,
            "ci_low": self.reward.ci_low,
            "ci_high": self.reward.ci_high,
            "em": self.em.value,
            "em_ci_low": self.em.ci_low,
            "em_ci_high": self.em.ci_high,
            "tokens": self.tokens.value,
            "tokens_ci_low": self.tokens.ci_low,
            "tokens_ci_high": self.tokens.ci_high,
            "ess": self.reward.ess,
            "max_weight": self.reward.max_weight,
            "n": self.reward.n,
            "support": self.support,
            "warnings": list(self.warnings),
        }
        return {k: _finite_or_none(v) for k, v in document.items()}


@dataclass(frozen=True)
class Evaluation:
    """Estimates of every target: overall, and per segment (keyed by segment)."""

    overall: list[PolicyEstimate]
    segments: dict[str, list[PolicyEstimate]]

    def find(self, name: str, estimator: str, segment: str | None = None) -> PolicyEstimate:
        """The estimate of one target by one estimator, overall or in `segment`.

        Raises:
            KeyError: no such target or estimator.
        """
        estimates = self.overall if segment is None else self.segments[segment]
        for estimate in estimates:
            if estimate.name == name and estimate.estimator == estimator:
                return estimate
        raise KeyError((name, estimator, segment))


def _finite_or_none(value: Any) -> Any:  # noqa: ANN401 - any JSON value passes through
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class _Scope:
    """The rows of one scope and the per-row inputs restricted to them."""

    rows: NDArray[np.int64] | None
    arm: NDArray[np.int64]
    segment: NDArray[np.int64]
    probability: NDArray[np.float64]
    logged_pmf: NDArray[np.float64]
    y: dict[str, NDArray[np.float64]]
    q_hat: dict[str, NDArray[np.float64]]

    def take(self, matrix: NDArray[np.float64]) -> NDArray[np.float64]:
        return matrix if self.rows is None else matrix[self.rows]


def evaluate(
    log: ReplayLog,
    targets: list[Target],
    weights: RewardConfig,
    *,
    n_folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    confidence: float = 0.95,
) -> Evaluation:
    """Score every target with every estimator, overall and per segment.

    Args:
        log: The replayed interactions.
        targets: The policies to evaluate (`controller.replay.targets`).
        weights: Reward weights for the per-row reward.
        n_folds: Cross-fitting folds of DR's reward model (one assignment for all calls).
        seed: Seed of the fold assignment.
        confidence: Nominal coverage of every interval.

    Returns:
        The estimates.
    """
    # The estimators' dot products go to OpenBLAS, whose worker threads make a 50k-row dot
    # product hundreds of times slower on a busy 2-core machine (measured: 3.4 ms against 7 us);
    # these vectors gain nothing from threads.
    with threadpool_limits(limits=1, user_api="blas"):
        return _evaluate(log, targets, weights, n_folds=n_folds, seed=seed, confidence=confidence)


def _evaluate(
    log: ReplayLog,
    targets: list[Target],
    weights: RewardConfig,
    *,
    n_folds: int,
    seed: int,
    confidence: float,
) -> Evaluation:
    y = {"em": log.em, "tokens": log.tokens, "reward": reward(log.em, log.tokens, weights)}
    folds = fold_assignment(log.n, n_folds, seed) if log.n >= 2 else np.zeros(1, np.int64)  # noqa: PLR2004
    q_hat = {
        name: cross_fit(values, log.arm, log.segment, n_arms=len(log.arms), folds=folds)
        for name, values in y.items()
    }
    scopes: dict[str | None, _Scope] = {None: _scope(log, None, y, q_hat)}
    for index, segment in enumerate(log.segments):
        scopes[segment] = _scope(log, np.flatnonzero(log.segment == index), y, q_hat)
    results: dict[str | None, list[PolicyEstimate]] = {key: [] for key in scopes}
    for target in targets:
        for key, scope in scopes.items():
            results[key].extend(_evaluate_target(target, scope, log.segments, confidence))
    overall = results.pop(None)
    return Evaluation(overall=overall, segments={k: v for k, v in results.items() if k is not None})


def _scope(
    log: ReplayLog,
    rows: NDArray[np.int64] | None,
    y: dict[str, NDArray[np.float64]],
    q_hat: dict[str, NDArray[np.float64]],
) -> _Scope:
    def take(values: NDArray[Any]) -> NDArray[Any]:
        return values if rows is None else values[rows]

    return _Scope(
        rows=rows,
        arm=take(log.arm),
        segment=take(log.segment),
        probability=take(log.probability),
        logged_pmf=take(log.logged_pmf),
        y={k: take(v) for k, v in y.items()},
        q_hat={k: take(v) for k, v in q_hat.items()},
    )


def _evaluate_target(
    target: Target, scope: _Scope, segments: list[str], confidence: float
) -> list[PolicyEstimate]:
    if target.pmf is None:
        by_estimator = _on_policy(scope, confidence)
        support: float | None = 1.0
        extra: tuple[str, ...] = ()
    else:
        pmf = scope.take(target.pmf)
        by_estimator = _off_policy(pmf, scope, confidence)
        support, extra = support_check(pmf, scope.logged_pmf)
    estimates = []
    for estimator in ESTIMATORS:
        outcome = by_estimator[estimator]
        warnings = tuple(
            dict.fromkeys(
                _named(w, segments)
                for w in (*outcome["reward"].warnings, *outcome["em"].warnings, *extra)
            )
        )
        estimates.append(
            PolicyEstimate(
                name=target.name,
                kind=target.kind,
                estimator=estimator,
                em=outcome["em"],
                tokens=outcome["tokens"],
                reward=outcome["reward"],
                support=support,
                warnings=warnings,
            )
        )
    return estimates


def _named(warning: str, segments: list[str]) -> str:
    return _GROUP.sub(lambda m: f"segment {segments[int(m.group(1))]!r}", warning)


def _off_policy(
    pmf: NDArray[np.float64], scope: _Scope, confidence: float
) -> dict[str, dict[str, Estimate]]:
    # The weights and their warnings depend on the target only: diagnosed once, shared by the
    # nine estimates (3 estimators x 3 outcomes) instead of once per estimator call.
    target_probability = pmf[np.arange(pmf.shape[0]), scope.arm]
    weights = target_probability / scope.probability
    warnings = diagnose(weights, target_pmf=pmf, arm=scope.arm, group=scope.segment)
    result: dict[str, dict[str, Estimate]] = {e: {} for e in ESTIMATORS}
    for outcome in OUTCOMES:
        y = scope.y[outcome]
        for estimator, function in (("ips", ips), ("snips", snips)):
            estimate = function(target_probability, scope.probability, y, confidence=confidence)
            result[estimator][outcome] = replace(estimate, warnings=warnings)
        direct, correction = dr_terms(pmf, scope.arm, scope.probability, y, scope.q_hat[outcome])
        result["dr"][outcome] = wald_estimate(
            direct + correction,
            weights,
            confidence=confidence,
            warnings=warnings,
            estimator="dr",
        )
    return result


def _on_policy(scope: _Scope, confidence: float) -> dict[str, dict[str, Estimate]]:
    # Target = logging policy: every weight is 1, IPS and SNIPS are the sample mean.
    p = scope.probability
    result: dict[str, dict[str, Estimate]] = {e: {} for e in ESTIMATORS}
    pmf_known = not np.isnan(scope.logged_pmf).any()
    for outcome in OUTCOMES:
        y = scope.y[outcome]
        result["ips"][outcome] = ips(p, p, y, confidence=confidence)
        result["snips"][outcome] = snips(p, p, y, confidence=confidence)
        if pmf_known:
            result["dr"][outcome] = doubly_robust(
                scope.logged_pmf, scope.arm, p, y, scope.q_hat[outcome], confidence=confidence
            )
        else:
            result["dr"][outcome] = _unavailable(
                result["ips"][outcome],
                "dr",
                "some decisions carry no pmf: DR of the logged policy is unavailable",
            )
    return result


def _unavailable(like: Estimate, estimator: str, reason: str) -> Estimate:
    return replace(
        like,
        value=math.nan,
        ci_low=math.nan,
        ci_high=math.nan,
        std_error=math.nan,
        warnings=(reason,),
        estimator=estimator,
    )


def support_check(
    pmf: NDArray[np.float64], logged_pmf: NDArray[np.float64]
) -> tuple[float | None, tuple[str, ...]]:
    """Share of the target's mass the logging policy could have drawn, and warnings.

    Args:
        pmf: Target pmf per row, shape (n, K).
        logged_pmf: Logging pmf per row, shape (n, K); NaN rows are unknown.

    Returns:
        (support, warnings): support is the mean over rows with a known logging
        pmf of Σ_a π(a|x_i) 1[μ_i(a) > 0], None when no row has one.
    """
    known = ~np.isnan(logged_pmf[:, 0])
    warnings: list[str] = []
    if not known.all():
        warnings.append(
            f"support unknown on {1.0 - known.mean():.1%} of rows (decisions without a pmf)"
        )
    if not known.any():
        return None, tuple(warnings)
    covered = np.where(logged_pmf[known] > 0.0, pmf[known], 0.0).sum(axis=1)
    support = float(covered.mean())
    if support < 1.0 - _SUPPORT_TOLERANCE:
        warnings.append(
            f"no support for {1.0 - support:.1%} of the target's mass: the logging policy "
            "gave those arms zero probability, so IPS and SNIPS miss it and DR extrapolates"
        )
    return support, tuple(warnings)
