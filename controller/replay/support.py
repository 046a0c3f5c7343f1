"""Which of a target's mass the log identifies, per estimator kind, and the outcomes' range.

`controller.ope.bounds` bounds a target's mass on arms the log barely observed.
What "observed" means depends on what an estimator reads:

- the estimators of the played arm alone (IPS, SNIPS, DR) see arm b in
  segment s through the requests that played it: the cell's effective sample
  size is that of 1/p_i over them;
- those that read counterfactual traces (graph IPS, graph DR, the direct
  estimate) see it on every request that observed it, played or traced: the
  ESS of 1/P_i(b) with the observation-graph propensity, so an arm never
  played but shown by every trace is fully supported.

A cell whose ESS is below `ReplaySettings.min_ess` is unidentified for that
kind. Estimators that weight each row (`Estimator.needs_row_support`: IPS,
SNIPS, DR and their graph forms) also miss the rows whose logging pmf could
not draw (or observe) the arm at all, however well the cell is observed
elsewhere: an adaptive logger excludes an arm once it looks bad, and DR's
reward model would fill those rows from the few it had, with an error its
interval omits (measured: DR's token intervals of "never stop early" covered
14 of 20 seeds that way). The direct estimate, a stratified mean whose
interval carries each cell's sampling error, needs the cell only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from stopbandit.controller.ope.bounds import cell_ess, observation_weights

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from stopbandit.controller.config import RewardConfig
    from stopbandit.controller.ope.rows import Graph
    from stopbandit.controller.replay.feed import ReplayLog
    from stopbandit.controller.replay.settings import ReplaySettings

# A segment with fewer outcomes bounds its tokens by the whole log's range.
_MIN_RANGE_ROWS = 30


@dataclass(frozen=True)
class Support:
    """Per kind of estimator (traced or not): cells with adequate support, and row masks.

    Attributes:
        min_ess: The threshold cells were held to.
        ess: ESS per (segment, arm) cell, keyed by whether the estimator reads traces.
        cells: ess >= min_ess, same keys.
        rows: Whether row i's logging could draw (untraced key) or observe
            (traced key) arm b at all, shape (n, K); True where unknown.
        ranges: (low, high) of each outcome's mean on an arm, per segment, shape (G,) each.
    """

    min_ess: float
    ess: dict[bool, NDArray[np.float64]]
    cells: dict[bool, NDArray[np.bool_]]
    rows: dict[bool, NDArray[np.bool_]]
    ranges: dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]]

    def mask(
        self,
        *,
        traced: bool,
        row_support: bool,
        segment: NDArray[np.int64],
        rows: NDArray[np.int64] | None,
    ) -> NDArray[np.bool_]:
        """The identified (row, arm) entries of a scope, shape (rows, K)."""
        identified = self.cells[traced][segment]
        if row_support:
            by_row = self.rows[traced] if rows is None else self.rows[traced][rows]
            identified = identified & by_row
        return identified


def support(
    log: ReplayLog,
    settings: ReplaySettings,
    weights: RewardConfig,
    graph: dict[str, Graph] | None,
) -> Support:
    """The `Support` of a replayed log (the traced kind only when `graph` is given)."""
    n, n_arms = log.n, len(log.arms)
    rows = np.arange(n)
    played = np.zeros((n, n_arms), dtype=np.bool_)
    played[rows, log.arm] = True
    chance = np.full((n, n_arms), np.nan)
    chance[rows, log.arm] = log.probability
    n_groups = len(log.segments)
    ess = {False: cell_ess(observation_weights(played, chance), log.segment, n_groups)}
    unknown = np.asarray(np.isnan(log.logged_pmf).any(axis=1), dtype=np.bool_)
    drawable: NDArray[np.bool_] = (log.logged_pmf > 0.0) | unknown[:, None]
    drawable[rows, log.arm] = True
    masks = {False: drawable}
    if graph is not None:
        observed, propensity = graph["em"].observed, graph["em"].propensity
        ess[True] = cell_ess(observation_weights(observed, propensity), log.segment, n_groups)
        masks[True] = (np.nan_to_num(propensity, nan=1.0) > 0.0) | observed
    # A cell never observed is unidentified whatever the threshold (min_ess 0 included).
    cells = {key: (value >= settings.min_ess) & (value > 0.0) for key, value in ess.items()}
    return Support(
        min_ess=settings.min_ess,
        ess=ess,
        cells=cells,
        rows=masks,
        ranges=ranges(log, settings, weights),
    )


def ranges(
    log: ReplayLog, settings: ReplaySettings, weights: RewardConfig
) -> dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """(low, high) per segment of EM, tokens and reward.

    EM: the configured bounds. Tokens: the configured bounds, else the range of
    tokens the segment's requests spent at the arms they played: a mean lies
    within the range of its draws, and a segment's requests at other arms span
    it widely; a segment with fewer than `_MIN_RANGE_ROWS` outcomes takes the whole
    log's range. Traces are left out so that every estimator of a log, traced or
    not, is bounded by the same range. Reward: the ends of those, under the weights.
    """
    n_groups = len(log.segments)
    em_low = np.full(n_groups, settings.em_bounds[0])
    em_high = np.full(n_groups, settings.em_bounds[1])
    if settings.token_bounds is not None:
        tokens_low = np.full(n_groups, settings.token_bounds[0])
        tokens_high = np.full(n_groups, settings.token_bounds[1])
    else:
        segment, values = log.segment, log.tokens
        tokens_low = np.full(n_groups, values.min())
        tokens_high = np.full(n_groups, values.max())
        counts = np.bincount(segment, minlength=n_groups)
        np.minimum.at(low := np.full(n_groups, np.inf), segment, values)
        np.maximum.at(high := np.full(n_groups, -np.inf), segment, values)
        own = counts >= _MIN_RANGE_ROWS
        tokens_low[own], tokens_high[own] = low[own], high[own]
    cost = weights.token_cost_per_1k / 1000.0
    return {
        "em": (em_low, em_high),
        "tokens": (tokens_low, tokens_high),
        "reward": (
            weights.em_weight * em_low - cost * tokens_high,
            weights.em_weight * em_high - cost * tokens_low,
        ),
    }
