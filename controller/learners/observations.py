"""One segment's data as the pooling reads it: per-arm means, precisions, and information.

Without traces each arm's EM and log-token mean carry a precision
n / variance (variances shrunk towards the segment's pooled one: a few
observations say little about their own spread). With traces, requests
seen at several arms make the arms' means correlated: `paired` gives the
full information (matrix, vector) of each outcome, which replaces the
diagonal one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from stopbandit.controller.learners.paired import paired_information, step_variances, view

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import NDArray

    from stopbandit.controller.learners.arm_stats import ArmMoments, ArmStats

_EM_VAR_FLOOR = 0.01
_DEFAULT_EM_VAR = 0.25
_VARIANCE_PRIOR_N = 20.0
_DEFAULT_TOKEN_CV = 1.0
_LOG_TOKEN_VAR_FLOOR = 1e-4


@dataclass
class Observations:
    """One segment's per-arm data: EM and log-token means with their precisions."""

    n: NDArray[np.float64]
    prior: NDArray[np.float64]
    em: NDArray[np.float64]
    em_precision: NDArray[np.float64]
    log_tokens: NDArray[np.float64]
    log_tokens_precision: NDArray[np.float64]
    # Where requests were seen at several arms: the full information about each outcome.
    em_information: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None
    log_tokens_information: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None

    def information(self, outcome: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(matrix, vector) of one outcome; diagonal where no request was paired."""
        paired = self.em_information if outcome == "em" else self.log_tokens_information
        if paired is not None:
            return paired
        y, precision = (
            (self.em, self.em_precision)
            if outcome == "em"
            else (self.log_tokens, self.log_tokens_precision)
        )
        return np.diag(precision), precision * np.where(precision > 0.0, y, 0.0)

    @classmethod
    def empty(cls, arms: int) -> Observations:
        """No data on any of `arms` arms."""
        return cls(*(np.zeros(arms) for _ in range(6)))  # type: ignore[arg-type]


def observations_of(stats: ArmStats) -> Observations:
    """Per-arm means and precisions of EM and log tokens from one segment's own data."""
    k_arms = stats.arms
    obs = Observations.empty(k_arms)
    moments = [stats.moments(k) for k in range(k_arms)]
    em_var_pooled, cv2_pooled = _pooled_variances(moments)
    em_vars = np.ones(k_arms)
    token_cv2s = np.ones(k_arms)
    for k, m in enumerate(moments):
        obs.n[k] = m.n
        if m.n <= 0.0:
            continue
        # A few observations say little about their own spread (19 successes out of 19
        # have variance 0): shrink each arm's variance towards the segment's pooled one.
        em_var = (m.n * m.em_var + _VARIANCE_PRIOR_N * em_var_pooled) / (m.n + _VARIANCE_PRIOR_N)
        cv2 = m.tokens_var / m.tokens**2 if m.tokens > 0.0 else cv2_pooled
        cv2 = (m.n * cv2 + _VARIANCE_PRIOR_N * cv2_pooled) / (m.n + _VARIANCE_PRIOR_N)
        obs.em[k], obs.em_precision[k] = m.em, m.n / max(em_var, _EM_VAR_FLOOR)
        # log of a mean has variance cv^2 / n (delta method).
        obs.log_tokens[k] = math.log(max(m.tokens, 1.0))
        obs.log_tokens_precision[k] = m.n / max(cv2, _LOG_TOKEN_VAR_FLOOR)
        em_vars[k], token_cv2s[k] = max(em_var, _EM_VAR_FLOOR), max(cv2, _LOG_TOKEN_VAR_FLOOR)
    if stats.paired.patterns:
        _add_paired(obs, stats, em_vars, token_cv2s)
    return obs


def _add_paired(
    obs: Observations,
    stats: ArmStats,
    em_vars: NDArray[np.float64],
    token_cv2s: NDArray[np.float64],
) -> None:
    # EM in its own unit; tokens relative to each arm's mean, so that their information
    # is about log tokens (delta method: d log m = dm / m), the scale the pooling uses.
    seen = obs.n > 0.0
    variance = np.where(seen, em_vars, 1.0)
    obs.em_information = paired_information(
        obs.n, obs.n * obs.em, variance, view(stats.paired, "em", np.ones_like(obs.n))
    )
    unit = np.exp(obs.log_tokens)
    matrix, vector = paired_information(
        obs.n,
        obs.n.copy(),
        np.where(seen, token_cv2s, 1.0),
        view(stats.paired, "tokens", unit),
    )
    obs.log_tokens_information = (matrix, matrix @ (obs.log_tokens - 1.0) + vector)


def cold_start(
    prior_em: Sequence[float], prior_tokens: Sequence[float], weights: Sequence[float]
) -> Observations:
    """A segment with no data: the shared models' predictions, each worth `weights[k]` requests."""
    obs = Observations.empty(len(weights))
    for k, n0 in enumerate(weights):
        if n0 <= 0.0:
            continue
        em = min(max(prior_em[k], 0.0), 1.0)
        obs.em[k] = em
        obs.em_precision[k] = n0 / max(em * (1.0 - em), _EM_VAR_FLOOR)
        obs.log_tokens[k] = math.log(max(prior_tokens[k], 1.0))
        obs.log_tokens_precision[k] = n0 / _DEFAULT_TOKEN_CV**2
        obs.prior[k] = n0
    return obs


def stacked(
    observations: Sequence[Observations], outcome: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Every segment's information (matrix, vector) about one outcome, stacked."""
    matrices, vectors = zip(*(o.information(outcome) for o in observations), strict=True)
    return np.stack(matrices), np.stack(vectors)


def step_sampling(
    information: tuple[NDArray[np.float64], NDArray[np.float64]] | None,
) -> NDArray[np.float64] | None:
    """Each segment's sampling variance of each step, from its information."""
    if information is None:
        return None
    return np.stack([step_variances(matrix) for matrix in information[0]])


def _pooled_variances(moments: Sequence[ArmMoments]) -> tuple[float, float]:
    """The segment's EM variance and squared token CV, pooled over arms (defaults if no data)."""
    n = sum(m.n for m in moments)
    if n < _VARIANCE_PRIOR_N:
        return _DEFAULT_EM_VAR, _DEFAULT_TOKEN_CV**2
    em_var = sum(m.n * m.em_var for m in moments) / n
    cv2 = sum(m.n * m.tokens_var / m.tokens**2 for m in moments if m.tokens > 0.0) / n
    return max(em_var, _EM_VAR_FLOOR), max(cv2, _LOG_TOKEN_VAR_FLOOR)
