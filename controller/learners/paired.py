"""Outcomes of one request at several arms: what the pairing says about the differences.

A request that carries a counterfactual trace was observed at several arms
at once (the played one and lower ones, SCHEMA 1.1). Its outcomes at
neighbouring arms are strongly alike, so the difference between two arms
is measured on the same requests with a fraction of the noise of two
independent samples. Per segment, requests are grouped by the set of arms
they observed (a bit mask, the *pattern*); each pattern keeps decayed sums
of the outcome vector and its cross-products.

From those, `paired_information` gives the exact Gaussian information
(generalised least squares, Aitken 1935) about the per-arm means: each
pattern P contributes n_P * E_P' C_PP^-1 E_P, with C the within-request
covariance of outcomes across arms, estimated from the same sums. Requests
seen at one arm only contribute n_k / var_k, as without traces. Unlike
averaging each arm on its own, this uses a request seen at arms 0.9 and 1.0
to correct the estimate of 1.0 for how its requests did at 0.9, as a
regression estimator would (Anderson 1957, monotone missing data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

_RESCALE_ABOVE = 1e100
# Pairs needed before a measured correlation counts fully (shrunk towards 0 before that).
_CORRELATION_PRIOR_N = 20.0
# Outcomes of nested runs can be almost identical; a correlation of 1 would claim a
# difference known exactly, so it is capped.
MAX_CORRELATION = 0.98


@dataclass
class _Pattern:
    """Decayed sums of the requests that observed exactly one set of arms."""

    n: float
    em: NDArray[np.float64]
    em2: NDArray[np.float64]
    tokens: NDArray[np.float64]
    tokens2: NDArray[np.float64]


@dataclass
class PairedSums:
    """Per observation pattern (arms seen on one request, two or more), decayed sums."""

    arms: int
    gamma: float
    scale: float = 1.0
    patterns: dict[int, _Pattern] = field(default_factory=dict)
    # Requests that could carry a trace (played above the lowest arm), and those that did.
    traceable: float = 0.0
    traced: float = 0.0
    _square: NDArray[np.float64] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._square = np.zeros((self.arms, self.arms))

    def tick(self, *, traceable: bool = False, traced: bool = False) -> None:
        """One request of the segment went by: older sums count a little less."""
        self.scale /= self.gamma
        if traceable:
            self.traceable += self.scale
        if traced:
            self.traced += self.scale
        if self.scale > _RESCALE_ABOVE:
            self._multiply(1.0 / self.scale)
            self.scale = 1.0

    def trace_share(self) -> float:
        """Share of the segment's requests played above the lowest arm that carried a trace."""
        return self.traced / self.traceable if self.traceable > 0.0 else 0.0

    def add(self, mask: int, em: NDArray[np.float64], tokens: NDArray[np.float64]) -> None:
        """Add the request just ticked, observed at the arms of `mask` (values elsewhere 0)."""
        w = self.scale
        pattern = self.patterns.get(mask)
        if pattern is None:
            k = self.arms
            pattern = self.patterns[mask] = _Pattern(
                0.0, np.zeros(k), np.zeros((k, k)), np.zeros(k), np.zeros((k, k))
            )
        pattern.n += w
        # w * np.outer(x, x), formed in a scratch square: the same products and roundings,
        # without np.outer's wrapper calls and two temporaries, which cost more than the
        # arithmetic at this size (once per traced request).
        square = self._square
        pattern.em += w * em
        np.multiply(em[:, None], em, out=square)
        square *= w
        pattern.em2 += square
        pattern.tokens += w * tokens
        np.multiply(tokens[:, None], tokens, out=square)
        square *= w
        pattern.tokens2 += square

    def _multiply(self, factor: float) -> None:
        self.traceable *= factor
        self.traced *= factor
        for p in self.patterns.values():
            p.n *= factor
            p.em *= factor
            p.em2 *= factor
            p.tokens *= factor
            p.tokens2 *= factor

    def cap_counts(self, max_count: float) -> None:
        """Scale every pattern down so that no arm has more than `max_count` paired requests."""
        counts = self.counts()
        top = float(counts.max()) if counts.size else 0.0
        if top > max_count:
            self._multiply(max_count / top)

    def counts(self) -> NDArray[np.float64]:
        """Paired requests per arm (decayed)."""
        total = np.zeros(self.arms)
        for mask, p in self.patterns.items():
            total[_arms_of(mask, self.arms)] += p.n / self.scale
        return total

    def to_json(self) -> dict[str, Any]:
        """State as JSON-ready data."""
        return {
            "scale": self.scale,
            "traceable": self.traceable,
            "traced": self.traced,
            "patterns": {
                str(mask): [
                    p.n,
                    p.em.tolist(),
                    p.em2.tolist(),
                    p.tokens.tolist(),
                    p.tokens2.tolist(),
                ]
                for mask, p in self.patterns.items()
            },
        }

    def load_json(self, state: dict[str, Any]) -> None:
        """Restore state written by `to_json`."""
        self.scale = float(state["scale"])
        self.traceable = float(state["traceable"])
        self.traced = float(state["traced"])
        self.patterns = {
            int(mask): _Pattern(
                float(n), np.array(em), np.array(em2), np.array(tok), np.array(tok2)
            )
            for mask, (n, em, em2, tok, tok2) in state["patterns"].items()
        }


def _arms_of(mask: int, arms: int) -> NDArray[np.int64]:
    return np.array([k for k in range(arms) if mask >> k & 1], dtype=np.int64)


@dataclass(frozen=True)
class PairedView:
    """One outcome (EM, or tokens scaled by each arm's mean) of every pattern, undecayed."""

    masks: list[NDArray[np.int64]]
    n: list[float]
    sums: list[NDArray[np.float64]]
    cross: list[NDArray[np.float64]]


def view(sums: PairedSums, outcome: str, unit: NDArray[np.float64]) -> PairedView:
    """The patterns' counts, sums and cross-products of `outcome`, each arm divided by `unit`."""
    masks, n, totals, cross = [], [], [], []
    for mask, p in sums.patterns.items():
        arms = _arms_of(mask, sums.arms)
        scale = unit[arms]
        first = (p.em if outcome == "em" else p.tokens)[arms] / sums.scale / scale
        second = (p.em2 if outcome == "em" else p.tokens2)[np.ix_(arms, arms)] / sums.scale
        masks.append(arms)
        n.append(p.n / sums.scale)
        totals.append(first)
        cross.append(second / np.outer(scale, scale))
    return PairedView(masks, n, totals, cross)


def correlation(paired: PairedView, arms: int) -> NDArray[np.float64]:
    """Within-request correlation of the outcome between arms, pooled over patterns.

    Each pattern's cross-products are centred on that pattern's own means
    (patterns are requests played at different arms, whose means may
    differ); a correlation is shrunk towards 0 until about
    `_CORRELATION_PRIOR_N` pairs back it, and capped at `MAX_CORRELATION`.
    """
    covariance = np.zeros((arms, arms))
    pairs = np.zeros((arms, arms))
    for idx, n, total, cross in zip(paired.masks, paired.n, paired.sums, paired.cross, strict=True):
        if n <= 0.0:
            continue
        block = np.ix_(idx, idx)
        covariance[block] += cross - np.outer(total, total) / n
        pairs[block] += n
    variance = np.maximum(np.diag(covariance), 0.0)
    scale = np.sqrt(np.outer(variance, variance))
    with np.errstate(divide="ignore", invalid="ignore"):
        measured = np.where(scale > 0.0, covariance / scale, 0.0)
    shrunk = measured * pairs / (pairs + _CORRELATION_PRIOR_N)
    result = np.clip(shrunk, -MAX_CORRELATION, MAX_CORRELATION)
    np.fill_diagonal(result, 1.0)
    return result


def paired_information(
    n: NDArray[np.float64],
    total: NDArray[np.float64],
    variance: NDArray[np.float64],
    paired: PairedView,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Gaussian information (matrix, vector) about the per-arm means of one outcome.

    Args:
        n: observations per arm, paired ones included.
        total: sum of the outcome per arm, in the unit of `paired`.
        variance: variance of one observation per arm, in that unit.
        paired: the requests observed at two or more arms.

    Returns:
        (information matrix, information vector): with no paired requests,
        diag(n / variance) and total / variance.
    """
    arms = len(n)
    rho = correlation(paired, arms)
    sd = np.sqrt(variance)
    matrix = np.zeros((arms, arms))
    vector = np.zeros(arms)
    single_n = n.copy()
    single_total = total.copy()
    for idx, count, sums in zip(paired.masks, paired.n, paired.sums, strict=True):
        if count <= 0.0:
            continue
        block = rho[np.ix_(idx, idx)] * np.outer(sd[idx], sd[idx])
        inverse = np.linalg.pinv(block, hermitian=True)
        matrix[np.ix_(idx, idx)] += count * inverse
        vector[idx] += inverse @ sums
        single_n[idx] -= count
        single_total[idx] -= sums
    # What a pattern took may exceed an arm's own count by rounding of the decayed sums.
    single_n = np.maximum(single_n, 0.0)
    matrix[np.diag_indices(arms)] += single_n / variance
    vector += np.where(single_n > 0.0, single_total, 0.0) / variance
    return matrix, vector


def step_variances(matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    """Sampling variance of each step (arm k+1 minus arm k) the data alone measure.

    From the inverse of the information matrix on the arms with data; inf for
    a step with an arm that has none. Paired arms measure their step far
    better than 1/precision_k + 1/precision_k+1 says.
    """
    arms = len(matrix)
    seen = np.flatnonzero(np.diag(matrix) > 0.0)
    cov = np.full((arms, arms), np.nan)
    if seen.size:
        cov[np.ix_(seen, seen)] = np.linalg.pinv(matrix[np.ix_(seen, seen)], hermitian=True)
    steps = cov[:-1, :-1].diagonal() + cov[1:, 1:].diagonal() - 2.0 * np.diag(cov, 1)
    return np.where(np.isnan(steps), np.inf, np.maximum(steps, 1e-12))
