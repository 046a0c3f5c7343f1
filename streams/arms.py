"""The arms of a stopping knob, and the one rule for "is this value an arm".

Thresholds and budgets travel as JSON numbers, so a value read back may
differ from the configured arm in its last bits: an arm matches within
`math.isclose`'s default tolerance. Values repeat (every decision carries
one), so answers are remembered.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable


class Arms:
    """Ascending arm values with a remembered value-to-index lookup."""

    def __init__(self, values: Iterable[float]) -> None:
        self.values = tuple(float(v) for v in values)
        self._index: dict[float, int | None] = {v: k for k, v in enumerate(self.values)}

    def __len__(self) -> int:
        return len(self.values)

    def index(self, value: float) -> int | None:
        """Index of the arm `value` is, or None if it is none of them."""
        try:
            return self._index[value]
        except KeyError:
            found = next((k for k, arm in enumerate(self.values) if math.isclose(arm, value)), None)
            if len(self._index) < len(self.values) + _REMEMBERED_MISSES:
                self._index[value] = found
            return found

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int | float) and self.index(float(value)) is not None


# Values that are no arm are remembered too, up to this many (they come from bad input).
_REMEMBERED_MISSES = 1024
