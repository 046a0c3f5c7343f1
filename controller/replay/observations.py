"""Every arm a replayed request was observed at: its played arm and its counterfactual trace.

An outcome of SCHEMA 1.1 may carry `counterfactual: [[arm, em, tokens], ...]`,
what the request returned at lower arms on its own run. Replay keeps a trace
by the rules `ControllerCore.observed` learns by: every arm one of the
configured arms (else `unknown_arm`) and strictly below the played one (else
`not_below_played`); one that breaks either is dropped whole and counted by
reason, as the traces the decoder already dropped (`shape`, `order`,
`monotone`, ...), while the outcome itself is kept. A kept trace that leaves
out some arm below the played one is kept and counted as `incomplete`: the
graph estimators' chances assume complete traces (`controller.ope.graph`).

`Observations` is None for a log where no trace was kept: everything replay
reports on such a log is what it reported before traces existed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from stopbandit.controller.config import StopbanditConfig


@dataclass
class TraceStats:
    """What happened to the traces: kept (incomplete among them) and dropped by reason."""

    kept: int = 0
    incomplete: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def __bool__(self) -> bool:
        """Whether any outcome carried a trace at all."""
        return self.kept > 0 or bool(self.dropped)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "kept": self.kept,
            "incomplete": self.incomplete,
            "dropped": dict(sorted(self.dropped.items())),
        }


@dataclass(frozen=True)
class Observations:
    """What each interaction was observed at, arm by arm (played arm and kept trace).

    Attributes:
        observed: Whether interaction i was observed at arm b, shape (n, K).
        em: Exact match at each observed arm, shape (n, K); NaN where not observed.
        tokens: Tokens at each observed arm, shape (n, K); NaN where not observed.
        traced: Whether interaction i kept a trace, shape (n,).
        incomplete: How many kept traces left out an arm below the played one.
    """

    observed: NDArray[np.bool_]
    em: NDArray[np.float64]
    tokens: NDArray[np.float64]
    traced: NDArray[np.bool_]
    incomplete: int


class TraceRecorder:
    """Collects the kept traces of the interactions as they join, and counts the rest."""

    def __init__(self, config: StopbanditConfig, stats: TraceStats) -> None:
        self.config = config
        self.stats = stats
        self._row: list[int] = []
        self._arm: list[int] = []
        self._em: list[float] = []
        self._tokens: list[float] = []

    def dropped_by_decoder(self, reason: str) -> None:
        """Count a trace the decoder dropped (a contract rule of the trace alone)."""
        self.stats.dropped[reason] += 1

    def record(
        self, row: int, played: int, counterfactual: tuple[tuple[float, float, int], ...]
    ) -> None:
        """Keep the trace of interaction `row` (played at arm index `played`), or count its drop."""
        if not counterfactual:
            return
        arms = [self.config.arm_index(arm) for arm, _, _ in counterfactual]
        known = [arm for arm in arms if arm is not None]
        if len(known) < len(arms):
            self.stats.dropped["unknown_arm"] += 1
            return
        if any(arm >= played for arm in known):
            self.stats.dropped["not_below_played"] += 1
            return
        self.stats.kept += 1
        # Arms are distinct (the decoder checked) and below `played`: all of them iff `played`.
        if len(known) < played:
            self.stats.incomplete += 1
        for arm, (_, em, tokens) in zip(known, counterfactual, strict=True):
            self._row.append(row)
            self._arm.append(arm)
            self._em.append(em)
            self._tokens.append(float(tokens))

    def finish(
        self, arm: NDArray[np.int64], em: NDArray[np.float64], tokens: NDArray[np.float64]
    ) -> Observations | None:
        """The observation matrices of the n interactions; None when no trace was kept."""
        if not self._row:
            return None
        n, n_arms = arm.size, len(self.config.arms)
        observed = np.zeros((n, n_arms), dtype=np.bool_)
        em_at = np.full((n, n_arms), np.nan)
        tokens_at = np.full((n, n_arms), np.nan)
        rows = np.arange(n)
        for matrix, values in ((em_at, em), (tokens_at, tokens)):
            matrix[rows, arm] = values
        observed[rows, arm] = True
        row = np.asarray(self._row, dtype=np.int64)
        trace_arm = np.asarray(self._arm, dtype=np.int64)
        observed[row, trace_arm] = True
        em_at[row, trace_arm] = self._em
        tokens_at[row, trace_arm] = self._tokens
        traced = np.zeros(n, dtype=np.bool_)
        traced[row] = True
        return Observations(
            observed=observed,
            em=em_at,
            tokens=tokens_at,
            traced=traced,
            incomplete=self.stats.incomplete,
        )
