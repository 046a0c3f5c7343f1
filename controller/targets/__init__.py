"""Target mode: `token_cost_per_1k` as a dual variable λ, tuned so one fleet-wide figure holds.

The operator states an outcome instead of a weight: "cut 30 % of tokens, lose as
little EM as possible" (`target.token_reduction`) or "save what you can, lose at
most 0.5 EM points" (`target.max_em_drop_pts`). Both are a constrained problem
whose Lagrangian is the reward itself, EM - λ · tokens / 1000, so the token
cost is the constraint's multiplier and the policy builder needs no change:
the tuned λ replaces the configured `token_cost_per_1k` in the weights that
reach `PolicyBuilder.decide` (`controller.core`), for the daemon, `simulate`
and `replay` alike.

Measurement. Whoever learns interactions keeps cumulative `Totals`: requests,
their realised tokens and EM (what was served, exploration included), and
what the reference arm would have given the same requests (each segment's
count times the learners' estimate at the reference arm, settled at every
publish). The achieved value over an update's interval is read off the
difference of two totals, so sums from many partitions simply add:

    token_reduction = 100 · (1 - Δtokens / Δreference_tokens)   (points)
    em_drop_pts     = 100 · (Δreference_em - Δem) / Δn          (points)

Step rule. Both figures rise with λ (a dearer token stops earlier), so one
rule serves both. At an update at time t, with target τ and achieved a_t:

    e_t     = τ - a_t                                           (points)
    Δ_t     = clip(k_p · (e_t - e_{t-1}) + k_i · e_t, -max_step, +max_step)
    log λ_{t+1} = clip(log λ_t + Δ_t, log λ_min, log λ_max)

a velocity-form PI controller on log λ, i.e. multiplicative (mirror-descent)
dual ascent plus an optional proportional term: scale-free in the units of
tokens, λ > 0 always, no step larger than a factor e^max_step. The defaults
are k_i = 0.02 per point for token reduction and 0.1 for EM drop, k_p = 0
(pure dual ascent: with one publish of delay between a step and its effect,
a proportional term destabilises the loop on steep plants; see
`controller.targets.controller`). The integral alone is stable while
s · k_i < 2, s the plant's slope in points per e-fold of λ. An update happens only
when `interval_s` passed since the last one and the interval holds at least
`min_interactions` requests; otherwise the interval keeps growing. In steady
state Σ e_t is bounded (log λ is), so the time average of the achieved value
meets the target whenever the target is reachable inside [λ_min, λ_max]; when
it is not (a token target already met at λ_min, an EM budget unspent at
λ_max) λ rests at the bound, which is the constraint being slack.

This module is pure: values and time come in as arguments.
"""

from stopbandit.controller.targets.controller import (
    DEFAULT_GAINS,
    Gains,
    LambdaController,
    Step,
    metric_of,
    target_points,
)
from stopbandit.controller.targets.measure import POINTS, Metric, Tally, Totals
from stopbandit.controller.targets.mode import TargetMode

__all__ = [
    "DEFAULT_GAINS",
    "POINTS",
    "Gains",
    "LambdaController",
    "Metric",
    "Step",
    "Tally",
    "TargetMode",
    "Totals",
    "metric_of",
    "target_points",
]
