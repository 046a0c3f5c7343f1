"""The arms of a stopping knob, and the one rule for "is this value an arm".

Thresholds and budgets travel as JSON numbers, so a value read back may
differ from the configured arm in its last bits: an arm matches within
`math.isclose`'s default tolerance. Values repeat (every decision carries
one), so answers are remembered.

What an arm may be depends on the knob (SCHEMA 1.1, "Arms and the stopping
knob"): a confidence threshold in [0, 1], or a thinking-token budget, an
integer >= 1. Either way the arms ascend, and the reference arm, the one
that never stops a request early, is the highest: 1.0 for thresholds, the
largest budget for budgets. The config, the policy and the scenario check
arms with `arm_problem`, so all three say the same thing about the same list.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

Knob = Literal["confidence", "token_budget"]
KNOBS: tuple[Knob, ...] = ("confidence", "token_budget")
DEFAULT_KNOB: Knob = "confidence"
# The confidence knob's arm that never stops early; for budgets it is the largest budget.
CONFIDENCE_REFERENCE = 1.0


def arm_problem(knob: Knob, arms: Sequence[float]) -> tuple[str, str] | None:
    """What is wrong with `arms` for `knob`, as (field, reason); None if they are usable.

    The field is `arms` or `arms.<index>` for one value, as a validation error names it.
    """
    for k, arm in enumerate(arms):
        if not math.isfinite(arm):
            return f"arms.{k}", "must be a finite number"
        if knob == "confidence" and not 0.0 <= arm <= 1.0:
            return (
                f"arms.{k}",
                f"{arm:g} is no confidence threshold (the confidence knob's lie in [0, 1])",
            )
        if knob == "token_budget" and (arm < 1.0 or not float(arm).is_integer()):
            return (
                f"arms.{k}",
                f"{arm:g} is no token budget (the token_budget knob's are integers >= 1)",
            )
    if any(b <= a for a, b in itertools.pairwise(arms)):
        return "arms", "must be strictly ascending"
    return None


def reference_arm(knob: Knob, arms: Sequence[float]) -> float:
    """The arm that never stops a request early: 1.0 for thresholds, the largest budget."""
    if knob == "confidence":
        return CONFIDENCE_REFERENCE
    return float(max(arms))


def arm_label(value: float) -> str:
    """An arm as people read it: `0.95`, `2048` (never `2.048e+03` or `2048.0`)."""
    if float(value).is_integer() and abs(value) < 1e15:  # noqa: PLR2004 - exact in a float
        return str(int(value))
    return f"{value:g}"


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
