"""What target mode measures: cumulative `Totals` of requests served, and each core's `Tally`.

See `controller.targets` for how λ is stepped from them. Pure.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping

Metric = Literal["token_reduction", "em_drop_pts"]
POINTS = 100.0
_FIELDS = ("n", "tokens", "em", "reference_tokens", "reference_em")


@dataclass(frozen=True)
class Totals:
    """Cumulative sums over requests served: what target mode measures (see the module doc)."""

    n: float = 0.0
    tokens: float = 0.0
    em: float = 0.0
    reference_tokens: float = 0.0
    reference_em: float = 0.0

    def __add__(self, other: Totals) -> Totals:
        return Totals(*(a + b for a, b in zip(self.values(), other.values(), strict=True)))

    def __sub__(self, other: Totals) -> Totals:
        return Totals(*(a - b for a, b in zip(self.values(), other.values(), strict=True)))

    def values(self) -> tuple[float, float, float, float, float]:
        """The five sums in field order."""
        return (self.n, self.tokens, self.em, self.reference_tokens, self.reference_em)

    def achieved(self, metric: Metric) -> float | None:
        """The metric over these sums, in points; None without requests or reference tokens."""
        if self.n <= 0:
            return None
        if metric == "token_reduction":
            if self.reference_tokens <= 0:
                return None
            return POINTS * (1.0 - self.tokens / self.reference_tokens)
        return POINTS * (self.reference_em - self.em) / self.n

    def to_dict(self) -> dict[str, float]:
        """JSON-ready."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Totals:
        """Inverse of `to_dict`.

        Raises:
            ValueError: a sum is missing, not a number, or not finite.
        """
        try:
            values = [float(data[name]) for name in _FIELDS]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"target totals: {error!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise ValueError("target totals: sums must be finite")
        return cls(*values)


@dataclass
class Tally:
    """One learner's `Totals`: requests add as they are learned, the reference settles later.

    The reference arm's tokens and EM come from the learners' estimates, which
    are computed at each publish anyway: until then a segment's requests wait
    in `pending` as (n, tokens, em), and `settle` prices them at its estimate.
    """

    totals: Totals = field(default_factory=Totals)
    pending: dict[str, list[float]] = field(default_factory=dict)

    def add(self, segment: str, em: float, tokens: float) -> None:
        """One request served in `segment` with its realised EM and tokens."""
        sums = self.pending.get(segment)
        if sums is None:
            sums = self.pending[segment] = [0.0, 0.0, 0.0]
        sums[0] += 1.0
        sums[1] += tokens
        sums[2] += em

    def settle(self, reference: Mapping[str, tuple[float, float]]) -> Totals:
        """Price pending requests at `reference[segment]` = (EM, tokens) of the reference arm.

        Segments without an estimate stay pending. Returns the new totals.
        """
        settled = Totals()
        for segment in [s for s in self.pending if s in reference]:
            n, tokens, em = self.pending.pop(segment)
            reference_em, reference_tokens = reference[segment]
            settled += Totals(n, tokens, em, n * reference_tokens, n * reference_em)
        self.totals += settled
        return self.totals

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"totals": self.totals.to_dict(), "pending": dict(self.pending)}

    def restore(self, state: dict[str, Any]) -> None:
        """Load a `snapshot`.

        Raises:
            ValueError: the totals or a pending entry is malformed.
        """
        totals = Totals.from_dict(state.get("totals") or {})
        pending: dict[str, list[float]] = {}
        for segment, sums in (state.get("pending") or {}).items():
            if not isinstance(sums, list) or len(sums) != 3:  # noqa: PLR2004 - n, tokens, em
                raise ValueError(f"target tally: pending {segment!r} is not [n, tokens, em]")
            pending[str(segment)] = [float(v) for v in sums]
        self.totals, self.pending = totals, pending
