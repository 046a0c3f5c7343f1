"""Off-policy estimators: what another policy would have earned on a logged stream.

Pure functions over arrays (no I/O, no clock). Each returns an `Estimate`
with a normal-approximation interval and warnings when the log cannot
support the estimate. `ESTIMATORS` (`registry`) lists those replay computes.
"""

from controller.ope.dr import doubly_robust, dr, dr_terms
from controller.ope.estimate import Estimate
from controller.ope.intervals import effective_sample_size, support_warnings, wald_interval
from controller.ope.ips import importance_weights, ips
from controller.ope.registry import ESTIMATORS, Estimator, Registry
from controller.ope.reward_model import cross_fit, fit_cell_means, fold_assignment
from controller.ope.rows import Rows
from controller.ope.snips import snips

__all__ = [
    "ESTIMATORS",
    "Estimate",
    "Estimator",
    "Registry",
    "Rows",
    "cross_fit",
    "doubly_robust",
    "dr",
    "dr_terms",
    "effective_sample_size",
    "fit_cell_means",
    "fold_assignment",
    "importance_weights",
    "ips",
    "snips",
    "support_warnings",
    "wald_interval",
]
