"""Off-policy evaluation of replay's targets: EM, tokens and reward, overall and per segment.

Every target is scored with every estimator of `controller.ope.registry`
(IPS, SNIPS and cross-fitted DR) on the logged propensities, for three
outcomes: EM, tokens, and the reward computed per row from them under the
configured weights (so its interval carries their covariance). One
`fold_assignment` serves every reward model, so q̂ is fitted once per outcome
and shared by all targets and segments. The logged policy is evaluated
on-policy (w = 1): IPS and SNIPS are the sample mean; an estimator that reads
the target pmf (DR) reads the logged pmfs, when decisions carry them.

Beyond the estimators' own warnings (low ESS, arms never logged), replay
checks support with the logged pmfs: the share of a target's mass on arms
the logging policy gave zero probability, where IPS and SNIPS see nothing
and DR rests on its reward model alone.

On a log with counterfactual traces (SCHEMA 1.1) three more estimators run
(`controller.replay.graph_inputs` gives them every arm each request was
observed at): graph IPS and graph DR, which weight each observation by its
chance of being observed, and the direct estimate, each arm's mean over the
requests that observed it per segment, weighted by the segments' traffic:
what a fixed threshold's estimate rests on there, with no weights at all.
Each estimate then says how much of the target was observed directly
(`ObservedShare`). A log without traces is evaluated exactly as before.

Where a target puts mass on arms the log barely observed (a segment and arm
whose observation weights have an ESS below `ReplaySettings.min_ess`; for
the estimators that weight rows, also decisions that could not draw the
arm), that mass is not extrapolated: each estimator estimates the rest, and
the estimate becomes partial-identification bounds (`controller.ope.bounds`,
`controller.replay.support`), said once per policy by one note. Warnings
come ranked by the share of the target's mass they concern
(`controller.replay.ranking`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from stopbandit.controller.ope import Estimate, cross_fit, fold_assignment
from stopbandit.controller.ope.intervals import diagnose, effective_sample_size
from stopbandit.controller.ope.registry import ESTIMATORS
from stopbandit.controller.ope.rows import Graph, Rows
from stopbandit.controller.replay import graph_inputs, partial, ranking
from stopbandit.controller.replay.estimates import Evaluation, PolicyEstimate
from stopbandit.controller.replay.settings import ReplaySettings
from stopbandit.controller.replay.support import Support, support
from stopbandit.policies.reward import reward

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from stopbandit.controller.config import RewardConfig
    from stopbandit.controller.ope.registry import Estimator
    from stopbandit.controller.replay.feed import ReplayLog
    from stopbandit.controller.replay.targets import Target

__all__ = ["DEFAULT_FOLDS", "OUTCOMES", "Evaluation", "PolicyEstimate", "evaluate", "support_check"]

OUTCOMES = ("em", "tokens", "reward")
DEFAULT_FOLDS = 5
_SUPPORT_TOLERANCE = 1e-9
_NO_SUPPORT = "no support"
_GROUP = re.compile(r"group (\d+)")


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
    graph: dict[str, Graph] | None

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
    settings: ReplaySettings | None = None,
) -> Evaluation:
    """Score every target with every estimator, overall and per segment.

    Args:
        log: The replayed interactions.
        targets: The policies to evaluate (`controller.replay.targets`).
        weights: Reward weights for the per-row reward.
        n_folds: Cross-fitting folds of DR's reward model (one assignment for all calls).
        seed: Seed of the fold assignment.
        confidence: Nominal coverage of every interval.
        settings: When an arm is barely observed, and the outcomes' range
            (defaults: `ReplaySettings()`).

    Returns:
        The estimates.
    """
    # The estimators' dot products go to OpenBLAS, whose worker threads make a 50k-row dot
    # product hundreds of times slower on a busy 2-core machine (measured: 3.4 ms against 7 us);
    # these vectors gain nothing from threads.
    with threadpool_limits(limits=1, user_api="blas"):
        return _evaluate(
            log,
            targets,
            weights,
            n_folds=n_folds,
            seed=seed,
            confidence=confidence,
            settings=settings or ReplaySettings(),
        )


def _evaluate(
    log: ReplayLog,
    targets: list[Target],
    weights: RewardConfig,
    *,
    n_folds: int,
    seed: int,
    confidence: float,
    settings: ReplaySettings,
) -> Evaluation:
    y = {"em": log.em, "tokens": log.tokens, "reward": reward(log.em, log.tokens, weights)}
    q_hat: dict[str, NDArray[np.float64]] = {}
    folds = None
    if ESTIMATORS.needs_reward_model:
        folds = fold_assignment(log.n, n_folds, seed) if log.n >= 2 else np.zeros(1, np.int64)  # noqa: PLR2004
        q_hat = {
            name: cross_fit(values, log.arm, log.segment, n_arms=len(log.arms), folds=folds)
            for name, values in y.items()
        }
    graph = graph_inputs.graphs(log, weights, folds)
    identified = support(log, settings, weights, graph)
    context = _Context(log.segments, log.arms, confidence, identified)
    scopes: dict[str | None, _Scope] = {None: _scope(log, None, y, q_hat, graph)}
    for index, segment in enumerate(log.segments):
        rows = np.flatnonzero(log.segment == index)
        scopes[segment] = _scope(log, rows, y, q_hat, graph)
    results: dict[str | None, list[PolicyEstimate]] = {key: [] for key in scopes}
    for target in targets:
        for key, scope in scopes.items():
            results[key].extend(_evaluate_target(target, scope, context))
    overall = results.pop(None)
    return Evaluation(overall=overall, segments={k: v for k, v in results.items() if k is not None})


def _scope(
    log: ReplayLog,
    rows: NDArray[np.int64] | None,
    y: dict[str, NDArray[np.float64]],
    q_hat: dict[str, NDArray[np.float64]],
    graph: dict[str, Graph] | None,
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
        graph=(
            {k: graph_inputs.take(v, rows) for k, v in graph.items()} if graph is not None else None
        ),
    )


@dataclass(frozen=True)
class _Context:
    """What every target's evaluation shares: names, arms, confidence and the log's support."""

    segments: list[str]
    arms: list[float]
    confidence: float
    support: Support


def _evaluate_target(target: Target, scope: _Scope, context: _Context) -> list[PolicyEstimate]:
    segments, confidence = context.segments, context.confidence
    notes: dict[str, tuple[tuple[str, float], ...]] = {}
    pmf = None if target.pmf is None else scope.take(target.pmf)
    if pmf is None:
        by_estimator = _on_policy(scope, confidence)
        share: float | None = 1.0
        extra: tuple[str, ...] = ()
    else:
        by_estimator, notes = _off_policy(pmf, scope, context)
        share, extra = support_check(pmf, scope.logged_pmf)
        # What that warning said is now said by the bounds note, or by the fill note.
        extra = tuple(_NO_SUPPORT if w.startswith("no support for") else w for w in extra)
    mass = ranking.cell_mass(pmf, scope.segment, len(segments))
    observed = None
    if scope.graph is not None:
        taken = None if target.pmf is None else scope.take(target.pmf)
        observed = graph_inputs.observed_share(taken, scope.graph["em"].observed, scope.arm)
    estimates = []
    for estimator in ESTIMATORS.for_log(scope.graph is not None):
        outcome = by_estimator[estimator.name]
        # The logged pmfs' support is what weighting by the played arm sees; the
        # estimators that read traces check what was observed instead, and those
        # that weight rows have that mass bounded (said by their note).
        own = () if estimator.needs_traces else tuple(w for w in extra if w != _NO_SUPPORT)
        found = (*outcome["reward"].warnings, *outcome["em"].warnings, *own)
        # Its bounds note (what the estimate now is) leads; the rest by the mass they touch.
        warnings, shares = ranking.rank(
            ((w, ranking.share_of(w, mass)) for w in found),
            first=notes.get(estimator.name, ()),
        )
        estimates.append(
            PolicyEstimate(
                name=target.name,
                kind=target.kind,
                estimator=estimator.name,
                em=outcome["em"],
                tokens=outcome["tokens"],
                reward=outcome["reward"],
                support=share,
                warnings=tuple(_named(w, segments) for w in warnings),
                observed=observed,
                warning_shares=shares,
            )
        )
    return estimates


def _named(warning: str, segments: list[str]) -> str:
    return _GROUP.sub(lambda m: f"segment {segments[int(m.group(1))]!r}", warning)


def _rows(
    scope: _Scope,
    pmf: NDArray[np.float64] | None,
    confidence: float,
    *,
    by_segment: bool,
    partial: bool = False,
) -> dict[str, Rows]:
    # One target's rows per outcome. The weights and their warnings depend on the target
    # only: diagnosed once, shared by every estimator and outcome.
    if pmf is None:
        target_probability = scope.probability
    else:
        target_probability = pmf[np.arange(pmf.shape[0]), scope.arm]
    weights = target_probability / scope.probability
    group = scope.segment if by_segment else None
    warnings = diagnose(weights, target_pmf=pmf, arm=scope.arm, group=group, partial=partial)
    return {
        outcome: Rows(
            arm=scope.arm,
            logged_probability=scope.probability,
            target_probability=target_probability,
            weights=weights,
            warnings=warnings,
            y=scope.y[outcome],
            confidence=confidence,
            target_pmf=pmf,
            q_hat=scope.q_hat.get(outcome),
            graph=scope.graph[outcome] if scope.graph is not None else None,
            partial=partial,
        )
        for outcome in OUTCOMES
    }


def _computed(estimator: Estimator, rows: dict[str, Rows]) -> dict[str, Estimate]:
    return {outcome: estimator.compute(r) for outcome, r in rows.items()}


def _off_policy(
    pmf: NDArray[np.float64], scope: _Scope, context: _Context
) -> tuple[dict[str, dict[str, Estimate]], dict[str, tuple[tuple[str, float], ...]]]:
    # Estimators see the target's arms through different rows (played or observed; every
    # row or the cell): one identified part per kind, its rows built once for the kind.
    kinds: dict[tuple[bool, bool], list[Estimator]] = {}
    for estimator in ESTIMATORS.for_log(scope.graph is not None):
        kinds.setdefault((estimator.needs_traces, estimator.needs_row_support), []).append(
            estimator
        )
    result: dict[str, dict[str, Estimate]] = {}
    notes: dict[str, tuple[tuple[str, float], ...]] = {}
    for (traced, row_support), estimators in kinds.items():
        mask = context.support.mask(
            traced=traced, row_support=row_support, segment=scope.segment, rows=scope.rows
        )
        identified, per_row = partial.split(pmf, mask)
        unidentified = float(per_row.mean())
        if unidentified <= partial.MASS_TOLERANCE:
            rows = _rows(scope, pmf, context.confidence, by_segment=True)
            result |= {e.name: _computed(e, rows) for e in estimators}
            continue
        note = partial.bounds_note(
            pmf,
            mask,
            scope.segment,
            context.support,
            (context.segments, context.arms),
            traced=traced,
            row_support=row_support,
        )
        part = None
        if unidentified < 1.0 - partial.MASS_TOLERANCE:
            part = _rows(scope, identified, context.confidence, by_segment=True, partial=True)
        for estimator in estimators:
            result[estimator.name] = partial.bounded_outcomes(
                _computed(estimator, part) if part is not None else None,
                per_row,
                scope.segment,
                context.support,
                estimator=estimator.name,
                confidence=context.confidence,
            )
            notes[estimator.name] = ((note, unidentified),)
    return result, notes


def _on_policy(scope: _Scope, confidence: float) -> dict[str, dict[str, Estimate]]:
    # Target = logging policy: every weight is 1, IPS and SNIPS are the sample mean. The
    # estimators that read a target pmf read the logged pmfs, when every decision carried one;
    # their support is checked over the scope's rows pooled (no group), as `doubly_robust`
    # does by default and replay did before the registry.
    plain = _rows(scope, None, confidence, by_segment=False)
    with_pmf = None
    if any(e.needs_target_pmf for e in ESTIMATORS) and not np.isnan(scope.logged_pmf).any():
        with_pmf = _rows(scope, scope.logged_pmf, confidence, by_segment=False)
    result: dict[str, dict[str, Estimate]] = {}
    for estimator in ESTIMATORS.for_log(scope.graph is not None):
        if not estimator.needs_target_pmf:
            result[estimator.name] = _computed(estimator, plain)
        elif with_pmf is not None:
            result[estimator.name] = _computed(estimator, with_pmf)
        else:
            unavailable = _unavailable(plain["reward"], estimator)
            result[estimator.name] = dict.fromkeys(OUTCOMES, unavailable)
    return result


def _unavailable(rows: Rows, estimator: Estimator) -> Estimate:
    # No value, and the diagnostics of the w = 1 rows (those of the sample mean).
    return Estimate(
        value=math.nan,
        ci_low=math.nan,
        ci_high=math.nan,
        std_error=math.nan,
        confidence=rows.confidence,
        ess=effective_sample_size(rows.weights),
        max_weight=float(rows.weights.max()),
        n=rows.weights.size,
        warnings=(
            f"some decisions carry no pmf: {estimator.label} of the logged policy is unavailable",
        ),
        estimator=estimator.name,
        interval="wald",
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
