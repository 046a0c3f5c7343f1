"""What replay reports per target, estimator and scope: `PolicyEstimate` and `Evaluation`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stopbandit.controller.ope import Estimate
    from stopbandit.controller.replay.graph_inputs import ObservedShare


@dataclass(frozen=True)
class PolicyEstimate:
    """One target, one estimator, one scope (overall or a segment): EM, tokens and reward.

    Attributes:
        name: The target's name (`logged`, `fixed:0.95`, `learned`, `sweep:0.02`).
        kind: The target's kind.
        estimator: The name of a registered estimator (`ips`, `snips`, `dr`).
        em: Estimate of expected EM.
        tokens: Estimate of expected tokens.
        reward: Estimate of expected reward under the configured weights.
        support: Share of the target's mass on arms the logging policy could
            draw, over rows whose decision carried a pmf; None when none did.
        warnings: The estimators' warnings and replay's support warnings.
        observed: How much of the target the log observed directly; None on
            a log without traces.
        warning_shares: The share of the target's mass each warning concerns,
            in the warnings' order (largest first: `controller.replay.ranking`).
    """

    name: str
    kind: str
    estimator: str
    em: Estimate
    tokens: Estimate
    reward: Estimate
    support: float | None
    warnings: tuple[str, ...]
    observed: ObservedShare | None = None
    warning_shares: tuple[float, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The JSON object of one evaluated policy (NaN and infinities become null)."""
        document: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "estimator": self.estimator,
            "reward": self.reward.value,
            "ci_low": self.reward.ci_low,
            "ci_high": self.reward.ci_high,
            "em": self.em.value,
            "em_ci_low": self.em.ci_low,
            "em_ci_high": self.em.ci_high,
            "tokens": self.tokens.value,
            "tokens_ci_low": self.tokens.ci_low,
            "tokens_ci_high": self.tokens.ci_high,
            "ess": self.reward.ess,
            "max_weight": self.reward.max_weight,
            "n": self.reward.n,
            "support": self.support,
            "warnings": list(self.warnings),
            "warning_shares": list(self.warning_shares),
            "interval": self.reward.interval,
            "identified": self.reward.identified,
        }
        if self.observed is not None:
            document["observed"] = self.observed.to_json()
        return {k: _finite_or_none(v) for k, v in document.items()}


@dataclass(frozen=True)
class Evaluation:
    """Estimates of every target: overall, and per segment (keyed by segment)."""

    overall: list[PolicyEstimate]
    segments: dict[str, list[PolicyEstimate]]

    def find(self, name: str, estimator: str, segment: str | None = None) -> PolicyEstimate:
        """The estimate of one target by one estimator, overall or in `segment`.

        Raises:
            KeyError: No such target or estimator.
        """
        estimates = self.overall if segment is None else self.segments[segment]
        for estimate in estimates:
            if estimate.name == name and estimate.estimator == estimator:
                return estimate
        raise KeyError((name, estimator, segment))


def _finite_or_none(value: Any) -> Any:  # noqa: ANN401 - any JSON value passes through
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
