"""Off-policy estimators: what another policy would have earned on a logged stream.

Pure functions over arrays (no I/O, no clock). Each returns an `Estimate`
with a normal-approximation interval and warnings when the log cannot
support the estimate. `ESTIMATORS` (`registry`) lists those replay computes.
On logs with counterfactual traces (SCHEMA 1.1), `graph` (graph IPS and DR,
weighting every arm a request observed by its chance of being observed) and
`direct` (each arm's mean over the requests that observed it) read them.
"""

from stopbandit.controller.ope.direct import direct
from stopbandit.controller.ope.dr import doubly_robust, dr, dr_terms
from stopbandit.controller.ope.estimate import Estimate
from stopbandit.controller.ope.graph import (
    dr_graph,
    graph_weights,
    ips_graph,
    observation_propensity,
)
from stopbandit.controller.ope.intervals import (
    effective_sample_size,
    support_warnings,
    wald_interval,
)
from stopbandit.controller.ope.ips import importance_weights, ips
from stopbandit.controller.ope.registry import ESTIMATORS, Estimator, Registry
from stopbandit.controller.ope.reward_model import (
    cross_fit,
    cross_fit_observed,
    fit_cell_means,
    fold_assignment,
)
from stopbandit.controller.ope.rows import Graph, Rows
from stopbandit.controller.ope.snips import snips

__all__ = [
    "ESTIMATORS",
    "Estimate",
    "Estimator",
    "Graph",
    "Registry",
    "Rows",
    "cross_fit",
    "cross_fit_observed",
    "direct",
    "doubly_robust",
    "dr",
    "dr_graph",
    "dr_terms",
    "effective_sample_size",
    "fit_cell_means",
    "fold_assignment",
    "graph_weights",
    "importance_weights",
    "ips",
    "ips_graph",
    "observation_propensity",
    "snips",
    "support_warnings",
    "wald_interval",
]
