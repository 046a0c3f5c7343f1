"""A core's target mode: its tally and its λ controller, as one checkpointable piece. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stopbandit.controller.targets.controller import LambdaController
from stopbandit.controller.targets.measure import Tally

if TYPE_CHECKING:
    from collections.abc import Mapping

    from stopbandit.controller.config import TargetConfig


@dataclass
class TargetMode:
    """What a core keeps in target mode: its `Tally`, and a λ controller.

    Attributes:
        controller: λ and its step rule.
        tally: the totals of the requests this core learned.
        local: whether this core's own totals are the fleet's (simulate, replay,
            a daemon owning every partition in one core). The daemon sets it
            False and steps λ from every partition's totals (daemon/stats.py).
    """

    controller: LambdaController
    tally: Tally = field(default_factory=Tally)
    local: bool = True

    @classmethod
    def of(cls, config: TargetConfig, initial: float) -> TargetMode:
        """Target mode for `config`, λ starting from `initial`."""
        return cls(controller=LambdaController.of(config, initial))

    @property
    def lambda_(self) -> float:
        """The current token cost per 1k tokens."""
        return self.controller.lambda_

    def publish_round(self, reference: Mapping[str, tuple[float, float]], now: float) -> bool:
        """Settle the tally at the reference estimates; step λ if local. True if λ stepped."""
        totals = self.tally.settle(reference)
        return self.local and self.controller.update(totals, now)

    def report(self) -> dict[str, Any]:
        """λ, the target and what was achieved, with λ's path: for reports and plots."""
        controller = self.controller
        return {
            "metric": controller.metric,
            "target": controller.target,
            "lambda": controller.lambda_,
            "achieved": controller.achieved,
            "updates": controller.updates,
            "path": [[s.at_s, s.lambda_, s.achieved] for s in controller.history],
        }

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready: the controller's state and the tally."""
        return {"controller": self.controller.snapshot(), "tally": self.tally.snapshot()}

    def restore(self, state: dict[str, Any]) -> None:
        """Load a `snapshot`.

        Raises:
            ValueError: it is malformed.
        """
        if not isinstance(state, dict) or not isinstance(state.get("controller"), dict):
            # ValueError, as for every malformed checkpoint (the restore path catches it).
            raise ValueError("target state: expected {'controller': ..., 'tally': ...}")  # noqa: TRY004
        self.controller.restore(state["controller"])
        self.tally.restore(state.get("tally") or {})
