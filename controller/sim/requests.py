"""The simulated requests: one generator for the simulator and the fleet.

Request i falls in a segment drawn by traffic share, gets the request_id
and time the scenario's clock gives it, and, at whichever arm the caller
plays, an EM and a token count drawn from the segment's curve. The
simulator (`controller.sim.simulate`) and the fleet (`controller.sim.fleet`)
both draw through `Requests`, so the same seed gives both the same
requests, and a fleet that waits for each publish emits the simulator's
events.

The draws come from one seeded stream in blocks of `_BLOCK` requests: per
block the segment uniforms, then the EM uniforms, then the token normals.
Changing that order, the block size, or the table arithmetic changes every
seeded run and every event log made from one.

Where the scenario has traces (SCHEMA 1.1 `trace`), a second stream (its
own seed, so runs without traces keep their draws) gives each request one
latent normal per arm, a Gaussian copula with correlation `coupling`
between any two arms: EM at arm a is 1 when the latent falls below
Phi^-1(em_probability[a]), so each arm's marginal is exactly the curve's,
and the outcomes of one request at different arms are alike. Tokens share
the request's one noise draw, so they rise with the arm on every request.
A request whose node traces (a uniform below `share`) carries the outcomes
of every arm below the played one.

With the `token_budget` knob a request's tokens at budget b are its natural
length cut there, min(b, base_tokens * noise): the same noise draw, so they
rise with the budget on every request and never exceed it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from stopbandit.controller.sim.built import built
from stopbandit.streams.events import Outcome

if TYPE_CHECKING:
    from collections.abc import Sequence

    from stopbandit.controller.sim.scenario import DriftSpec, Truth
    from stopbandit.streams.events import ContextValue

START_TS = 1_764_489_600.0
SECONDS_PER_INTERACTION = 0.01
_BLOCK = 4096
# Seeds the trace stream apart from the main one: runs without traces keep their draws.
_TRACE_STREAM = 11


def nearest_arm(arms: Sequence[float], threshold: float) -> int:
    """Index of the arm nearest to `threshold` (the first of a tie).

    Not "is `threshold` an arm" (`streams.arms.Arms`): where to play a
    threshold that may be none of the arms, such as a fallback.
    """
    return min(range(len(arms)), key=lambda k: abs(arms[k] - threshold))


# Not frozen: a frozen dataclass's __init__ costs about a microsecond more per request.
@dataclass(slots=True)
class Request:
    """One simulated request before its arm is chosen (read it, do not change it).

    Attributes:
        index: its position in the run (0, 1, ...).
        segment: the index of its segment in the truth's keys.
        key: its segment key.
        request_id: the id a serving node would give it.
        ts: its time, seconds since the epoch.
        features: its segment's features (the truth's own dict, not a copy).
        em_u: the uniform draw its EM comes from.
        token_z: the standard normal draw its token count comes from.
    """

    index: int
    segment: int
    key: str
    request_id: str
    ts: float
    features: dict[str, ContextValue]
    em_u: float
    token_z: float
    latent: list[float] | None = None
    traced: bool = False


class Requests:
    """The seeded request stream of one run over `truth`, which it moves through drift.

    Call `draw` for request 0, 1, 2, ... in order, each after applying the
    drift events due by then (`pop_drift`, `apply`).

    Args:
        truth: the scenario's state; its drift events are applied to it as they fall due.
        seed: the random seed; the request ids carry it.

    Attributes:
        em: the EM probability per (segment, arm) now, as lists.
        tokens: the mean tokens per (segment, arm) now, as lists.
    """

    def __init__(self, truth: Truth, seed: int) -> None:
        self.truth = truth
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._pending_drift = sorted(truth.scenario.drift, key=lambda d: d.at)
        self._segment_u: list[float] = []
        self._em_u: list[float] = []
        self._token_z: list[float] = []
        self._trace_rng = np.random.default_rng([seed, _TRACE_STREAM])
        self._latents_by_coupling: dict[float, list[list[float]]] = {}
        self._trace_u: list[float] = []
        self._tables()

    def _tables(self) -> None:
        # Python lists: element access from the hot loop is several times faster than numpy's.
        truth = self.truth
        self.em: list[list[float]] = truth.em.tolist()
        self.tokens: list[list[float]] = truth.tokens.tolist()
        self._cumulative_share: list[float] = np.cumsum(truth.share).tolist()
        sigma2 = np.log1p(truth.token_cv**2)
        self._log_sigma: list[float] = np.sqrt(sigma2).tolist()
        self._log_mu: list[float] = (-sigma2 / 2.0).tolist()
        normal = statistics.NormalDist()
        self._em_cut: list[list[float]] = [[_cut(normal, p) for p in row] for row in self.em]
        # Budgets cut each request's natural length (base_tokens * noise); None for thresholds.
        self._budgets: list[float] | None = None
        if truth.knob == "token_budget":
            self._budgets = list(truth.arms)
            self._base_tokens: list[float] = truth.base_tokens.tolist()

    def pop_drift(self, index: int) -> DriftSpec | None:
        """The next drift event due by request `index`, no longer pending; None if none is."""
        if self._pending_drift and self._pending_drift[0].at <= index:
            return self._pending_drift.pop(0)
        return None

    def apply(self, drift: DriftSpec) -> None:
        """Move the truth through `drift`; later requests and outcomes follow it."""
        self.truth.apply(drift)
        self._tables()

    def draw(self, index: int) -> Request:
        """Request `index`: its segment, id, time and outcome draws."""
        j = index % _BLOCK
        if j == 0:
            self._segment_u = self._rng.random(_BLOCK).tolist()
            self._em_u = self._rng.random(_BLOCK).tolist()
            self._token_z = self._rng.standard_normal(_BLOCK).tolist()
            if self.truth.traced:
                self._draw_latents()
        s = _bisect(self._cumulative_share, self._segment_u[j])
        latent = self._latents_by_coupling[self.truth.coupling[s]][j] if self.truth.traced else None
        return Request(
            index=index,
            segment=s,
            key=self.truth.keys[s],
            request_id=f"s{self.seed}-{index:08d}",
            ts=START_TS + index * SECONDS_PER_INTERACTION,
            features=self.truth.features[s],
            em_u=self._em_u[j],
            token_z=self._token_z[j],
            latent=latent,
            traced=latent is not None and self._trace_u[j] < self.truth.trace_share[s],
        )

    def _draw_latents(self) -> None:
        # Equicorrelated normals, per request's segment: sqrt(c) * common + sqrt(1 - c) * own.
        rng = self._trace_rng
        common = rng.standard_normal((_BLOCK, 1))
        own = rng.standard_normal((_BLOCK, len(self.truth.arms)))
        self._trace_u = rng.random(_BLOCK).tolist()
        # Each coupling in the scenario for every request; the request's segment picks one.
        self._latents_by_coupling = {
            c: (math.sqrt(c) * common + math.sqrt(1.0 - c) * own).tolist()
            for c in set(self.truth.coupling)
        }

    def outcome(self, request: Request, arm: int) -> Outcome:
        """The outcome of `request` played at arm index `arm`, under the truth now."""
        s = request.segment
        noise = math.exp(self._log_mu[s] + self._log_sigma[s] * request.token_z)
        tokens = self._tokens(s, arm, noise)
        latent = request.latent
        if latent is None:
            # Built, not validated (controller/sim/built.py): a fifth of a run otherwise.
            return built(
                Outcome,
                v=1,
                request_id=request.request_id,
                ts=request.ts,
                segment=request.key,
                em=1.0 if request.em_u < self.em[s][arm] else 0.0,
                tokens=tokens,
            )
        cut = self._em_cut[s]
        counterfactual = None
        if request.traced and arm > 0:
            spent = [self._tokens(s, b, noise) for b in range(arm)]
            # The contract's monotone tokens, even where a curve's fractions dip.
            ceiling = tokens
            for b in range(arm - 1, -1, -1):
                ceiling = spent[b] = min(spent[b], ceiling)
            counterfactual = tuple(
                (self.truth.arms[b], 1.0 if latent[b] < cut[b] else 0.0, spent[b])
                for b in range(arm)
            )
        return built(
            Outcome,
            v=1,
            request_id=request.request_id,
            ts=request.ts,
            segment=request.key,
            em=1.0 if latent[arm] < cut[arm] else 0.0,
            tokens=tokens,
            counterfactual=counterfactual,
        )

    def _tokens(self, s: int, arm: int, noise: float) -> int:
        """Tokens of a request of segment `s` with token noise `noise`, at arm index `arm`."""
        if self._budgets is None:
            return int(self.tokens[s][arm] * noise)
        return int(min(self._budgets[arm], self._base_tokens[s] * noise))


def _cut(normal: statistics.NormalDist, probability: float) -> float:
    """Phi^-1(probability): a latent below it is an exact match (infinite at 0 and 1)."""
    if probability <= 0.0:
        return -math.inf
    if probability >= 1.0:
        return math.inf
    return normal.inv_cdf(probability)


def _bisect(cumulative: list[float], u: float) -> int:
    # u beyond the last edge falls in the last segment: the cumulative share may end below 1.0.
    for index, edge in enumerate(cumulative):
        if u < edge:
            return index
    return len(cumulative) - 1
