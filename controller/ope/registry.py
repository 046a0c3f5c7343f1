"""The off-policy estimators replay computes, in the order it lists them.

`controller.replay.evaluate` runs every registered estimator on every target,
scope and outcome; the JSON document, the `stopbandit replay` table and the
HTML report list them in registration order, the table and the report's plots
led by the primary estimator.

Adding an estimator: write it in its own module (formula and reference in its
docstring) with a function from `Rows` to `Estimate`, and add one
`ESTIMATORS.register(...)` line at the end of this module.

The estimators that read counterfactual traces (`needs_traces`: graph IPS,
graph DR and the direct estimate) run only on logs whose requests carry
them: without any trace graph IPS and DR are IPS and DR, so a log without
traces is reported as before. On a log with traces the table and the plots
lead with the estimator marked `primary_with_traces` (graph DR).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stopbandit.controller.ope.direct import direct_from_rows
from stopbandit.controller.ope.dr import dr_from_rows
from stopbandit.controller.ope.graph import dr_graph_from_rows, ips_graph_from_rows
from stopbandit.controller.ope.ips import ips_from_rows
from stopbandit.controller.ope.snips import snips_from_rows

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from stopbandit.controller.ope.estimate import Estimate
    from stopbandit.controller.ope.rows import Rows

# Names are JSON values, table keys and HTML cells: short lowercase words keep them plain.
_NAME = re.compile(r"[a-z][a-z0-9_-]*")


@dataclass(frozen=True)
class Estimator:
    """One registered estimator.

    Attributes:
        name: Its name in the JSON document, the report and `Evaluation.find` (`dr`).
        label: Its heading in the terminal table and the plots' titles (`DR`).
        compute: The estimate of one outcome from one target's rows.
        description: What it is, in one line.
        needs_target_pmf: It reads π(·|x) over every arm, not only the logged
            arm's probability: for the logged policy that is the logged pmfs,
            and without them (decisions that carry none) it is unavailable.
        needs_reward_model: It reads the cross-fitted reward model q̂.
        primary: The estimator the table leads with and the report plots;
            one per registry.
        needs_traces: It reads what each request observed at every arm
            (`Rows.graph`); computed only for logs that carry counterfactual traces.
        primary_with_traces: The estimator leading on a log with traces; at
            most one per registry (the primary leads when none is).
        needs_row_support: It weights each row, so it misses a row whose
            logging pmf could not draw (or observe) the target's arm however
            well the arm is observed elsewhere; replay bounds that mass for it
            (`controller.replay.support`). DR counts too: its reward model
            would fill such a row, but from a handful of the cell's other rows
            chosen by an adaptive logger, with an error its interval omits.
    """

    name: str
    label: str
    compute: Callable[[Rows], Estimate]
    description: str
    needs_target_pmf: bool = False
    needs_reward_model: bool = False
    primary: bool = False
    needs_traces: bool = False
    primary_with_traces: bool = False
    needs_row_support: bool = False


class Registry:
    """Estimators by name, in registration order."""

    def __init__(self) -> None:
        """An empty registry."""
        self._by_name: dict[str, Estimator] = {}

    def register(self, estimator: Estimator) -> Estimator:
        """Add `estimator` after those registered so far; return it.

        Raises:
            ValueError: Its name is not a short lowercase word or is taken, or
                it is primary and the registry has a primary already.
        """
        if not _NAME.fullmatch(estimator.name):
            raise ValueError(f"estimator name {estimator.name!r} is not a lowercase word")
        if estimator.name in self._by_name:
            raise ValueError(f"estimator {estimator.name!r} is registered already")
        if estimator.primary and any(e.primary for e in self):
            raise ValueError(f"{estimator.name!r} cannot be primary: {self.primary.name!r} is")
        if estimator.primary_with_traces and any(e.primary_with_traces for e in self):
            raise ValueError(f"{estimator.name!r} cannot lead with traces: another one does")
        self._by_name[estimator.name] = estimator
        return estimator

    def unregister(self, name: str) -> None:
        """Remove the estimator called `name` (for one registered for a while, as in tests).

        Raises:
            KeyError: No estimator has that name.
        """
        self._by_name.pop(self.get(name).name)

    def get(self, name: str) -> Estimator:
        """The estimator called `name`.

        Raises:
            KeyError: No estimator has that name.
        """
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(self.names)
            raise KeyError(f"unknown estimator {name!r} (registered: {known})") from None

    @property
    def names(self) -> tuple[str, ...]:
        """Every name, in registration order."""
        return tuple(self._by_name)

    @property
    def primary(self) -> Estimator:
        """The primary estimator.

        Raises:
            LookupError: None is registered.
        """
        for estimator in self:
            if estimator.primary:
                return estimator
        raise LookupError("no primary estimator is registered")

    def lead(self, traced: bool) -> Estimator:
        """The estimator tables and plots lead with, on a log with or without traces.

        Raises:
            LookupError: No primary estimator is registered.
        """
        if traced:
            for estimator in self:
                if estimator.primary_with_traces:
                    return estimator
        return self.primary

    def for_log(self, traced: bool) -> tuple[Estimator, ...]:
        """The estimators replay computes on a log with or without traces, in order."""
        return tuple(e for e in self if traced or not e.needs_traces)

    @property
    def needs_reward_model(self) -> bool:
        """Whether any registered estimator reads the reward model."""
        return any(e.needs_reward_model for e in self)

    def __iter__(self) -> Iterator[Estimator]:
        """The estimators in registration order."""
        return iter(tuple(self._by_name.values()))

    def __len__(self) -> int:
        """How many estimators are registered."""
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        """Whether an estimator called `name` is registered."""
        return name in self._by_name


ESTIMATORS = Registry()
ESTIMATORS.register(
    Estimator(
        "ips",
        "IPS",
        ips_from_rows,
        "inverse propensity scoring: (1/n) Σ w_i y_i",
        needs_row_support=True,
    )
)
ESTIMATORS.register(
    Estimator(
        "snips",
        "SNIPS",
        snips_from_rows,
        "self-normalised IPS: Σ w_i y_i / Σ w_i",
        needs_row_support=True,
    )
)
ESTIMATORS.register(
    Estimator(
        "dr",
        "DR",
        dr_from_rows,
        "doubly robust: the reward model's value corrected by IPS of its residual",
        needs_target_pmf=True,
        needs_reward_model=True,
        primary=True,
        needs_row_support=True,
    )
)
ESTIMATORS.register(
    Estimator(
        "ips_graph",
        "IPS-G",
        ips_graph_from_rows,
        "graph IPS: every arm a request observed, weighted by its chance of being observed",
        needs_target_pmf=True,
        needs_traces=True,
        needs_row_support=True,
    )
)
ESTIMATORS.register(
    Estimator(
        "dr_graph",
        "DR-G",
        dr_graph_from_rows,
        "graph DR: a reward model of every observation corrected by graph IPS of its residuals",
        needs_target_pmf=True,
        needs_reward_model=True,
        needs_traces=True,
        primary_with_traces=True,
        needs_row_support=True,
    )
)
ESTIMATORS.register(
    Estimator(
        "direct",
        "Direct",
        direct_from_rows,
        "direct: each arm's mean over the requests that observed it, weighted by segment",
        needs_target_pmf=True,
        needs_traces=True,
    )
)
