"""Two outcome models, EM and tokens, per (segment, arm): what the policies are built from.

ARCHITECTURE.md's numbers say: learn EM and tokens separately and compute
the reward only when a policy is built. Each arm's posterior combines

- the segment's own decayed statistics (`ArmStats`): exact, efficient, and
  drift-aware where a segment has traffic, with per-arm variances shrunk
  towards the segment's pooled variance (a few observations say little
  about their own spread);
- what all segments share (`pooling`): a common curve shape over the
  ordered arms (EM additive, tokens multiplicative), with each segment's
  deviation from it smoothed over neighbouring arms, so an arm a segment
  has barely played is judged by its neighbours and by other segments;
- a Vowpal Wabbit regression per outcome over shared features (segment id,
  the decision's context such as task and model) crossed with the arm
  (`-q sa`), trained on every segment, importance-weighted by the logged
  propensity: the cold-start prior of a segment with no data of its own,
  worth `prior_weight` observations once the arm is widely seen. (Measured
  here, its per-cell SGD estimates were 2-9x less accurate than the
  sufficient statistics, so it does not override a segment's own data.)

Arms enter every model by their index (VW's `a<k>`, the path of the
smoothness prior), never by their value, so thresholds and token budgets
are learned alike. One thing is knob-aware: the smoothness prior's steps.
Thresholds are a path of equal steps; budgets are a random walk in log2
budget, so a step between budgets twice as far apart on that scale
(8192 to 32768 is two doublings) has twice the prior variance
(`step_scales`). Where every step is one unit (every threshold list, and
budgets doubling at each arm) the prior is exactly the one-sd path.
"""

from __future__ import annotations

import base64
import hashlib
import math
import zlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from stopbandit.controller.learners.arm_stats import ArmStats
from stopbandit.controller.learners.caps import capped_columns
from stopbandit.controller.learners.observations import (
    Observations,
    cold_start,
    observations_of,
    stacked,
    step_sampling,
)
from stopbandit.controller.learners.pooling import (
    Shape,
    deviation_step_sd,
    fit_shapes,
    pooled_posterior,
    step_sds,
)
from stopbandit.controller.learners.vw import Backend, Regressor, available_backend, make_regressor
from stopbandit.policies.builder import ArmBeliefs
from stopbandit.streams.arms import DEFAULT_KNOB

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from numpy.typing import NDArray

    from stopbandit.controller.config import LearnerConfig
    from stopbandit.streams.arms import Knob
    from stopbandit.streams.events import ContextValue
    from stopbandit.streams.join import Interaction

_PRIOR_SUPPORT_FACTOR = 10.0
_EM_LEVEL_SD = 1.0
_LOG_TOKEN_LEVEL_SD = 10.0
# What another segment's observation of an arm is worth, as support, to this one's.
_SHARED_SUPPORT = 0.1


def _feature_token(text: str) -> str:
    # VW text format reserves space, ':' and '|'; a short digest is unambiguous and safe.
    if text.isascii() and text.replace("_", "").replace(".", "").replace("-", "").isalnum():
        return text
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def shared_features(segment: str, context: Mapping[str, ContextValue]) -> str:
    """The `|s` namespace of a segment: its id and its context, in VW text format."""
    parts = [f"seg={_feature_token(segment)}"]
    for key in sorted(context):
        value = context[key]
        if isinstance(value, str):
            parts.append(f"{key}={_feature_token(value)}")
        else:
            parts.append(f"{key}:{float(value)!r}")
    return "|s " + " ".join(parts)


def _rows_of(
    step_sd: float | NDArray[np.float64], index: NDArray[np.int64]
) -> float | NDArray[np.float64]:
    # One scale for all, or one per (segment, step): the rows of the segments solved.
    return np.asarray(step_sd)[index] if np.ndim(step_sd) == 2 else step_sd  # noqa: PLR2004


def _information_rows(
    information: tuple[NDArray[np.float64], NDArray[np.float64]] | None, index: NDArray[np.int64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    return None if information is None else (information[0][index], information[1][index])


def _posterior_rows(
    y: NDArray[np.float64],
    precision: NDArray[np.float64],
    fitted: tuple[Shape, dict[int, Shape]],
    index: NDArray[np.int64],
    *,
    step_sd: float | NDArray[np.float64],
    level_sd: float,
    information: tuple[NDArray[np.float64], NDArray[np.float64]] | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Posteriors of the segments (rows) `index`: on the shared shape, or on their own one.

    A segment the per-arm cap cut is solved on its own shape (`pooling.fit_shapes`).
    """
    shape, own = fitted
    mean, cov = pooled_posterior(
        y[index],
        precision[index],
        *shape,
        step_sd=_rows_of(step_sd, index),
        level_sd=level_sd,
        information=_information_rows(information, index),
    )
    for j in np.flatnonzero(np.isin(index, list(own))).tolist():
        one = index[j : j + 1]
        own_mean, own_cov = pooled_posterior(
            y[one],
            precision[one],
            *own[int(index[j])],
            step_sd=_rows_of(step_sd, one),
            level_sd=level_sd,
            information=_information_rows(information, one),
        )
        mean[j], cov[j] = own_mean[0], own_cov[0]
    return mean, cov


def step_scales(knob: Knob, arms: Sequence[float]) -> NDArray[np.float64] | None:
    """Per step between neighbouring arms, its prior sd relative to one unit; None for all ones.

    Thresholds: one unit per step (their index is their position). Budgets: sqrt of
    the step's length in log2 budget, relative to the shortest step, so a list that
    doubles at every arm is one unit per step too.
    """
    if knob != "token_budget" or len(arms) < 2:  # noqa: PLR2004 - a step needs two arms
        return None
    lengths = np.diff(np.log2(np.asarray(arms, dtype=np.float64)))
    relative = lengths / lengths.min()
    if np.allclose(relative, 1.0):
        return None
    return np.asarray(np.sqrt(relative), dtype=np.float64)


class OutcomeLearner:
    """EM and token estimates per (segment, arm), learned one interaction at a time."""

    def __init__(
        self,
        arms: Sequence[float],
        config: LearnerConfig,
        backend: Backend | None = None,
        knob: Knob = DEFAULT_KNOB,
        max_segments: int | None = None,
    ) -> None:
        self.arms = list(arms)
        self.step_scale = step_scales(knob, self.arms)
        self.config = config
        self.backend = backend or available_backend(config.backend)
        # Interactions are stored in the model file; the learning rate is not.
        self._vw_args = [
            "--quiet",
            "--learning_rate",
            str(config.learning_rate),
            "--power_t",
            str(config.power_t),
        ]
        interactions = [flag for pair in config.interactions for flag in ("-q", pair)]
        self.em_model: Regressor = make_regressor([*self._vw_args, *interactions], self.backend)
        self.tokens_model: Regressor = make_regressor([*self._vw_args, *interactions], self.backend)
        self.stats: dict[str, ArmStats] = {}
        self.contexts: dict[str, dict[str, ContextValue]] = {}
        self._shared: dict[str, str] = {}
        self.arm_counts = [0] * len(self.arms)
        self.learned = 0
        # Bounded under floods of new segments: past `max_segments` the one idle longest
        # (LRU by last interaction) is evicted; `evicted` lists them until the owner takes them.
        self.max_segments = max_segments
        self._recency: OrderedDict[str, None] = OrderedDict()
        self.evicted: list[str] = []
        self.evictions = 0
        # Segments learned since their beliefs were last computed (`estimates_changed`),
        # and what each segment's data and beliefs were then: a round costs O(changed).
        self.dirty: set[str] = set()
        self._observations: dict[str, Observations] = {}
        self.beliefs: dict[str, ArmBeliefs] = {}
        # Segments by when their beliefs were last solved, least recent first.
        self._solved: OrderedDict[str, None] = OrderedDict()

    def learn_one(
        self, interaction: Interaction, observed: Sequence[tuple[int, float, float, float]]
    ) -> bool:
        """Update both models with one interaction, seen at each arm of `observed`.

        Args:
            interaction: the joined decision and outcome.
            observed: (arm index, em, tokens, probability that this arm was observed) of the
                played arm and of each counterfactual arm: every outcome the node saw.

        Returns:
            True if the segment's statistics detected a drift and reset.
        """
        segment = interaction.segment
        if segment in self.stats:
            self._recency.move_to_end(segment)
        else:
            self._make_room()
            self._recency[segment] = None
        self.dirty.add(segment)
        shared = self._shared_for(segment, interaction.context)
        for arm, _, _, _ in observed:
            self.arm_counts[arm] += 1
        self._learn_prior(shared, observed[0], 1.0)
        if len(observed) > 1:
            # The shared models are a cold-start prior; one counterfactual arm per request,
            # drawn by request_id and weighted by how many it stands for, keeps them
            # unbiased at a fraction of the cost of learning every arm.
            lower = len(observed) - 1
            pick = zlib.crc32(interaction.request_id.encode()) % lower
            self._learn_prior(shared, observed[1 + pick], float(lower))
        stats = self.stats.get(segment)
        if stats is None:
            stats = self.stats[segment] = ArmStats(
                len(self.arms),
                self.config.half_life,
                self.config.drift_window,
                self.config.drift_z,
            )
        self.learned += 1
        return stats.learn([(arm, em, tokens) for arm, em, tokens, _ in observed])

    def _make_room(self) -> None:
        if self.max_segments is None:
            return
        while len(self._recency) >= self.max_segments:
            segment, _ = self._recency.popitem(last=False)
            self.forget(segment)
            self.evicted.append(segment)
            self.evictions += 1

    def forget(self, segment: str) -> None:
        """Drop everything learned about `segment` (its share of the shared VW models stays)."""
        self.stats.pop(segment, None)
        self.contexts.pop(segment, None)
        self._shared.pop(segment, None)
        self._recency.pop(segment, None)
        self.dirty.discard(segment)
        self._observations.pop(segment, None)
        self.beliefs.pop(segment, None)
        self._solved.pop(segment, None)

    def take_evicted(self) -> list[str]:
        """The segments evicted since the last call."""
        evicted, self.evicted = self.evicted, []
        return evicted

    def _learn_prior(
        self, shared: str, seen: tuple[int, float, float, float], stands_for: float
    ) -> None:
        arm, em, tokens, probability = seen
        weight = min(stands_for / probability, self.config.max_importance_weight)
        action = f"|a a{arm}"
        self.em_model.learn_one(f"{em!r} {weight!r} {shared} {action}")
        self.tokens_model.learn_one(f"{math.log1p(tokens)!r} {weight!r} {shared} {action}")

    def _shared_for(self, segment: str, context: dict[str, ContextValue]) -> str:
        if self.contexts.get(segment) != context:
            self.contexts[segment] = context
            self._shared[segment] = shared_features(segment, context)
        return self._shared[segment]

    def prior(self, segment: str) -> tuple[list[float], list[float]]:
        """What the shared VW models predict for every arm of `segment`: EM and tokens."""
        shared = self._shared.get(segment) or shared_features(segment, {})
        arms = range(len(self.arms))
        em = [self.em_model.predict_one(f"{shared} |a a{k}") for k in arms]
        tokens = [math.expm1(self.tokens_model.predict_one(f"{shared} |a a{k}")) for k in arms]
        return em, tokens

    def _cold_start(self, segment: str) -> Observations:
        # A segment with no data of its own starts from the shared models, worth a few observations.
        prior_em, prior_tokens = self.prior(segment)
        return cold_start(
            prior_em, prior_tokens, [self._prior_weight(k) for k in range(len(self.arms))]
        )

    def estimates_all(self, extra: Sequence[str] = ()) -> dict[str, ArmBeliefs]:
        """Per-arm posterior of every known segment (and of `extra` ones, cold-started).

        Segments share a common curve shape (`pooling.fit_shapes`) fitted on all
        their data; each one's deviation from it is smoothed over the ordered arms.
        """
        segments = [*self.stats, *(s for s in extra if s not in self.stats)]
        if not segments:
            return {}
        observations = [
            observations_of(self.stats[s]) if s in self.stats else self._cold_start(s)
            for s in segments
        ]
        return self._posteriors(segments, observations, None)

    def estimates_changed(
        self, *, force: bool = False, refresh: int = 0, limit: int | None = None
    ) -> dict[str, ArmBeliefs]:
        """Posteriors of the segments learned since their last one (of every segment with `force`).

        The shared fit (curve shape, step scales) is made on every segment's data,
        as `estimates_all` makes it, but only the changed segments' posteriors are
        solved, plus up to `refresh` others, those solved longest ago: the shape
        the others' learning moved reaches a segment without traffic within
        (segments / refresh) rounds, and at every forced round (restore,
        anti-entropy republish), which solves them all. A round where nothing was
        learned costs nothing (the fit has not moved either); one where every
        segment learned, or with at most `refresh` segments unchanged, is
        `estimates_all`, exactly. Without `force`, at most `limit` posteriors are
        solved: the changed segments with the most interactions first, the others
        stay changed for the next call.
        """
        if not force and not self.dirty:
            return {}
        waiting: set[str] = set()
        if not force and limit is not None and len(self.dirty) > limit:
            ranked = sorted(self.dirty, key=lambda s: -self.stats[s].updates)
            waiting = set(ranked[limit:])
        if limit is not None:
            refresh = min(refresh, max(limit - len(self.dirty), 0))
        stale = set() if force else self._stalest(refresh)
        segments = list(self.stats)
        observations = []
        rows = []
        for i, segment in enumerate(segments):
            obs = self._observations.get(segment)
            if obs is None or segment in self.dirty:
                obs = self._observations[segment] = observations_of(self.stats[segment])
                if segment not in waiting:
                    rows.append(i)
            elif force or segment in stale:
                rows.append(i)
            observations.append(obs)
        self.dirty = waiting
        if not rows:
            return {}
        changed = self._posteriors(segments, observations, rows)
        self.beliefs.update(changed)
        for segment in changed:
            self._solved[segment] = None
            self._solved.move_to_end(segment)
        return changed

    def _stalest(self, count: int) -> set[str]:
        """Up to `count` segments without new data, those solved longest ago."""
        stale: set[str] = set()
        for segment in self._solved:
            if len(stale) >= count:
                break
            if segment not in self.dirty:
                stale.add(segment)
        return stale

    def _posteriors(
        self,
        segments: Sequence[str],
        observations: Sequence[Observations],
        rows: Sequence[int] | None,
    ) -> dict[str, ArmBeliefs]:
        """Fit what segments share on all `observations`; solve `rows` (None: all)."""
        em_y = np.stack([o.em for o in observations])
        em_precision = np.stack([o.em_precision for o in observations])
        # What a segment's means stand for in the shared shape: capped (`caps.pool_weights`).
        counts = np.stack([o.n + o.prior for o in observations])
        em_fit = fit_shapes(em_y, em_precision, counts)
        em_shape = em_fit[0]
        paired = any(o.em_information is not None for o in observations)
        em_information = stacked(observations, "em") if paired else None
        token_information = stacked(observations, "tokens") if paired else None
        em_step_sd = deviation_step_sd(
            em_y,
            em_precision,
            em_shape[0],
            self.config.em_step_sd,
            step_sampling(em_information),
            counts=counts,
        )
        token_y = np.stack([o.log_tokens for o in observations])
        token_precision = np.stack([o.log_tokens_precision for o in observations])
        token_fit = fit_shapes(token_y, token_precision, counts)
        token_shape = token_fit[0]
        token_step_sd = deviation_step_sd(
            token_y,
            token_precision,
            token_shape[0],
            self.config.token_step_sd,
            step_sampling(token_information),
            counts=counts,
        )
        # Segments measured on paired requests may loosen the steps where they depart;
        # the others keep the fleet's scale (as every segment did before traces).
        em_step_sds: float | NDArray[np.float64] = em_step_sd
        if em_information is not None:
            sampling = step_sampling(em_information)
            assert sampling is not None  # noqa: S101 - given with the information
            own = step_sds(em_y, em_precision, em_shape[0], em_step_sd, sampling)
            has_pairs = np.array([o.em_information is not None for o in observations])
            em_step_sds = np.where(has_pairs[:, None], own, em_step_sd)
        token_step_sds: float | NDArray[np.float64] = token_step_sd
        if self.step_scale is not None:
            em_step_sds = np.broadcast_to(em_step_sds, (len(segments), len(self.arms) - 1))
            em_step_sds = em_step_sds * self.step_scale
            token_step_sds = token_step_sd * self.step_scale
        # Each segment's posterior is its own solve (batched): only `rows` are solved.
        index = np.arange(len(segments)) if rows is None else np.asarray(rows, dtype=np.int64)
        em_mean, em_cov = _posterior_rows(
            em_y,
            em_precision,
            em_fit,
            index,
            step_sd=em_step_sds,
            level_sd=_EM_LEVEL_SD,
            information=em_information,
        )
        log_mean, log_cov = _posterior_rows(
            token_y,
            token_precision,
            token_fit,
            index,
            step_sd=token_step_sds,
            level_sd=_LOG_TOKEN_LEVEL_SD,
            information=token_information,
        )
        # What other segments lend to a segment's support, capped per arm as in the shape: one
        # segment's traffic at an arm cannot make that arm supported (greedy-eligible) everywhere.
        lent = capped_columns(np.stack([o.n for o in observations]))
        lent_total = lent.sum(axis=0)
        result: dict[str, ArmBeliefs] = {}
        for j, i in enumerate(index.tolist()):
            segment, obs = segments[i], observations[i]
            tokens = np.exp(log_mean[j])
            result[segment] = ArmBeliefs(
                em=np.clip(em_mean[j], 0.0, 1.0),
                em_cov=em_cov[j],
                tokens=tokens,
                # delta method: d exp(x) = exp(x) dx
                tokens_cov=log_cov[j] * np.outer(tokens, tokens),
                n=obs.n,
                support=obs.n + obs.prior + _SHARED_SUPPORT * (lent_total - lent[i]),
                trace_share=stats.paired.trace_share()
                if (stats := self.stats.get(segment))
                else 0.0,
            )
        return result

    def estimates(self, segment: str) -> ArmBeliefs:
        """Per-arm posterior of one segment (see `estimates_all`)."""
        return self.estimates_all(extra=[segment])[segment]

    def _prior_weight(self, arm: int) -> float:
        # The shared model is credible for an arm only once it has seen it widely.
        full_at = _PRIOR_SUPPORT_FACTOR * max(self.config.prior_weight, 1.0)
        return self.config.prior_weight * min(1.0, self.arm_counts[arm] / full_at)

    def snapshot(self) -> dict[str, Any]:
        """State as JSON-ready data (models base64-encoded in VW's format)."""
        return {
            "arms": self.arms,
            "em_model": base64.b64encode(self.em_model.serialize()).decode(),
            "tokens_model": base64.b64encode(self.tokens_model.serialize()).decode(),
            "stats": {segment: s.to_json() for segment, s in self.stats.items()},
            "contexts": self.contexts,
            "arm_counts": self.arm_counts,
            "learned": self.learned,
            # Least recently learned first, as positions in `stats`: what a restore evicts first.
            "recency": self._recency_positions(),
        }

    def _recency_positions(self) -> list[int]:
        position = {segment: i for i, segment in enumerate(self.stats)}
        return [position[segment] for segment in self._recency]

    def restore(self, state: dict[str, Any]) -> None:
        """Load a `snapshot` (from either VW binding), replacing the current state."""
        if [float(a) for a in state["arms"]] != self.arms:
            raise ValueError(f"checkpoint arms {state['arms']} differ from config arms {self.arms}")
        self.em_model = make_regressor(
            self._vw_args, self.backend, base64.b64decode(state["em_model"])
        )
        self.tokens_model = make_regressor(
            self._vw_args, self.backend, base64.b64decode(state["tokens_model"])
        )
        order = _recency_order(list(state["stats"]), state.get("recency"))
        # A checkpoint from a larger limit keeps its most recent segments; the rest are evicted.
        cut = 0 if self.max_segments is None else max(0, len(order) - self.max_segments)
        self.evicted = order[:cut]
        self.evictions += cut
        kept = set(order[cut:])
        self._recency = OrderedDict.fromkeys(order[cut:])
        self.stats = {}
        self.dirty = set(kept)
        self._observations = {}
        self.beliefs = {}
        self._solved = OrderedDict()
        for segment, stats_state in state["stats"].items():
            if segment not in kept:
                continue
            stats = ArmStats(
                len(self.arms),
                self.config.half_life,
                self.config.drift_window,
                self.config.drift_z,
            )
            stats.load_json(stats_state)
            self.stats[segment] = stats
        self.contexts = {}
        self._shared = {}
        for segment, context in state["contexts"].items():
            if segment in kept:
                self._shared_for(segment, context)
        self.arm_counts = list(state["arm_counts"])
        self.learned = int(state["learned"])


def _recency_order(segments: list[str], positions: object) -> list[str]:
    """Segments least recently learned first; a checkpoint without the order: first seen first."""
    if (
        not isinstance(positions, list)
        or not all(type(i) is int for i in positions)
        or sorted(positions) != list(range(len(segments)))
    ):
        return segments
    return [segments[i] for i in positions]
