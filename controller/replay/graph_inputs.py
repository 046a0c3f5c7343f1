"""What replay's estimators read of counterfactual traces, and how much of a target they saw.

From `ReplayLog.observations` (every arm each interaction was observed at),
`graphs` builds the `controller.ope.Graph` of each outcome once for the whole
log: the observed outcomes (EM, tokens, and the reward computed at each arm
from them), each observation's chance under the logging policy
(`controller.ope.graph.observation_propensity`), and the reward model fitted
on every observation with the folds DR's uses. A scope (a segment) takes its
rows of it.

`ObservedShare` is what the report says of each estimate on a log with
traces: on how many requests the target's arm was observed (played there,
or shown by the trace), so how much of the estimate rests on direct
observation rather than on weights or a model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from stopbandit.controller.ope.graph import observation_propensity
from stopbandit.controller.ope.reward_model import cross_fit_observed
from stopbandit.controller.ope.rows import Graph
from stopbandit.policies.reward import reward

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from stopbandit.controller.config import RewardConfig
    from stopbandit.controller.replay.feed import ReplayLog


@dataclass(frozen=True)
class ObservedShare:
    """How much of a target the log observed directly, over one scope's n requests.

    Attributes:
        share: Σ_i Σ_b π(b|x_i) 1[i observed b] / n: the share of requests at
            which the target's arm was observed (for a stochastic target, the
            expected share under its pmf).
        n: The same as a count: for a fixed arm, its direct observations.
        played: Of those, the ones where the target's arm was the played arm.
        traced: The ones a trace showed (n - played).
    """

    share: float
    n: float
    played: float
    traced: float

    def to_json(self) -> dict[str, float]:
        """JSON-ready form."""
        return {"share": self.share, "n": self.n, "played": self.played, "traced": self.traced}


def observed_share(
    pmf: NDArray[np.float64] | None, observed: NDArray[np.bool_], arm: NDArray[np.int64]
) -> ObservedShare:
    """The `ObservedShare` of a target (pmf None: the logged policy, whose arm is always seen)."""
    n = arm.size
    if pmf is None:
        return ObservedShare(share=1.0, n=float(n), played=float(n), traced=0.0)
    seen = float((pmf * observed).sum())
    played = float(pmf[np.arange(n), arm].sum())
    return ObservedShare(share=seen / n, n=seen, played=played, traced=seen - played)


def graphs(
    log: ReplayLog, weights: RewardConfig, folds: NDArray[np.int64] | None
) -> dict[str, Graph] | None:
    """The graph of every outcome (em, tokens, reward) for the whole log; None without traces.

    Args:
        log: The replayed interactions.
        weights: Reward weights for the reward at each observed arm.
        folds: DR's fold assignment, for the reward model; None when no
            registered estimator needs one.
    """
    observations = log.observations
    if observations is None:
        return None
    y = {
        "em": observations.em,
        "tokens": observations.tokens,
        "reward": reward(observations.em, observations.tokens, weights),
    }
    propensity = observation_propensity(
        log.logged_pmf, log.arm, log.probability, observations.traced, log.segment
    )
    notes: tuple[str, ...] = ()
    if observations.incomplete:
        note = (
            f"{observations.incomplete} traces leave out arms below the played one: "
            "graph estimates count those arms unobserved, so they run low there"
        )
        notes = (note,)
    result = {}
    for name, values in y.items():
        q_hat = (
            cross_fit_observed(values, observations.observed, log.segment, folds=folds)
            if folds is not None
            else None
        )
        result[name] = Graph(
            observed=observations.observed,
            y=values,
            propensity=propensity,
            group=log.segment,
            q_hat=q_hat,
            notes=notes,
        )
    return result


def take(graph: Graph, rows: NDArray[np.int64] | None) -> Graph:
    """The graph of a scope's rows (all of them when `rows` is None)."""
    if rows is None:
        return graph
    return replace(
        graph,
        observed=graph.observed[rows],
        y=graph.y[rows],
        propensity=graph.propensity[rows],
        group=graph.group[rows],
        q_hat=graph.q_hat[rows] if graph.q_hat is not None else None,
    )
