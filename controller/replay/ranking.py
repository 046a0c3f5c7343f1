"""Warnings ranked by how much they matter: the share of the target's mass each one touches.

An estimate can carry many warnings (one per segment and arm it lacks
support in, ESS, traces); listed in the order they were found, the one that
moves the estimate drowns among those that do not. Each warning gets the
share of the target's mass it concerns:

- a (segment, arm) cell's warning: the target's mass on that cell;
- a warning about the weights as a whole (low ESS, no weight, one fold): 1,
  since it touches the whole estimate;
- a warning that states a share ("no support for 5.0% of the target's
  mass", the bounds note): that share;
- anything else: 0, listed last.

The estimators write cells as "group G arm A"; `rank` reads them before
replay names the groups after their segments.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from stopbandit.controller.ope.bounds import group_sums

if TYPE_CHECKING:
    from collections.abc import Iterable

    import numpy as np
    from numpy.typing import NDArray

_CELL = re.compile(r"group (\d+) arm (\d+)")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%")
_WHOLE = ("low effective sample size", "no weight", "one fold only")


def cell_mass(
    pmf: NDArray[np.float64] | None, group: NDArray[np.int64], n_groups: int
) -> NDArray[np.float64] | None:
    """The target's mass per (group, arm) cell as a share of its whole mass in the scope."""
    if pmf is None:
        return None
    share: NDArray[np.float64] = group_sums(pmf, group, n_groups) / max(pmf.shape[0], 1)
    return share


def share_of(warning: str, mass: NDArray[np.float64] | None) -> float:
    """The share of the target's mass `warning` concerns (module docstring)."""
    cell = _CELL.search(warning)
    if cell is not None and mass is not None:
        g, a = int(cell.group(1)), int(cell.group(2))
        if g < mass.shape[0] and a < mass.shape[1]:
            return float(mass[g, a])
    if warning.startswith(_WHOLE):
        return 1.0
    percent = _PERCENT.search(warning)
    if percent is not None:
        return float(percent.group(1)) / 100.0
    return 0.0


def rank(
    warnings: Iterable[tuple[str, float]],
    first: Iterable[tuple[str, float]] = (),
) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """Distinct warnings, largest share first (ties keep their order), and their shares.

    `first` (a bounds note: what the estimate is) leads, in its own order.
    """
    seen: dict[str, float] = {}
    for message, share in warnings:
        seen[message] = max(share, seen.get(message, 0.0))
    lead = dict(first)
    ordered = [*lead.items()]
    ordered += sorted(((m, s) for m, s in seen.items() if m not in lead), key=lambda i: -i[1])
    return tuple(m for m, _ in ordered), tuple(s for _, s in ordered)


def shown(warnings: list[str], limit: int) -> tuple[list[str], int]:
    """The first `limit` warnings (they come ranked) and how many are left out."""
    return warnings[:limit], max(len(warnings) - limit, 0)
