"""The learner's segments: LRU eviction past max_segments, and estimates of the changed ones."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stopbandit.controller.config import LearnerConfig
from stopbandit.controller.learners.outcome import OutcomeLearner
from stopbandit.streams.join import Interaction

ARMS = [0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0]


def _interaction(i: int, segment: str, rng: np.random.Generator) -> Interaction:
    arm = ARMS[int(rng.integers(len(ARMS)))]
    em = float(rng.random() < 0.4 + 0.5 * arm)
    tokens = int(200 + 2000 * arm * rng.random())
    return Interaction(f"r{i}", segment, {"task": segment[:2]}, arm, 1 / 7, 0, em, tokens, 0, 0)


def _learn(learner: OutcomeLearner, segments: list[str], per_segment: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    for i in range(per_segment):
        for segment in segments:
            learner.learn_one(
                interaction := _interaction(i * 1000 + len(segment), segment, rng),
                [(ARMS.index(interaction.threshold), interaction.em, interaction.tokens, 1 / 7)],
            )


def _same(a: object, b: object) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("em", "em_cov", "tokens"))


def test_past_max_segments_the_one_idle_longest_is_evicted() -> None:
    """LRU by last interaction: a segment learned again stays; evictions are listed and counted."""
    learner = OutcomeLearner(ARMS, LearnerConfig(), max_segments=3)
    _learn(learner, ["a", "b", "c"], 5)
    _learn(learner, ["a"], 1)  # b is now the idle longest
    _learn(learner, ["d"], 1)
    assert set(learner.stats) == {"a", "c", "d"}
    assert learner.take_evicted() == ["b"]
    _learn(learner, ["e", "f"], 1)
    assert set(learner.stats) == {"d", "e", "f"}
    assert learner.evictions == 3
    assert "b" not in learner.contexts
    assert "b" not in learner.snapshot()["stats"]


def test_a_restore_under_a_smaller_limit_keeps_the_most_recent_segments() -> None:
    """The checkpoint's recency order survives; a smaller limit evicts the least recent first."""
    big = OutcomeLearner(ARMS, LearnerConfig())
    _learn(big, ["a", "b", "c", "d"], 3)
    _learn(big, ["a"], 1)  # recency: b, c, d, a
    state = json.loads(json.dumps(big.snapshot()))
    small = OutcomeLearner(ARMS, LearnerConfig(), max_segments=2)
    small.restore(state)
    assert set(small.stats) == {"d", "a"}
    assert sorted(small.take_evicted()) == ["b", "c"]
    assert set(small.contexts) == {"d", "a"}
    _learn(small, ["e"], 1)  # d is the idle longest of the two kept
    assert set(small.stats) == {"a", "e"}


def test_changed_estimates_equal_the_full_ones_and_skip_the_unchanged() -> None:
    """All dirty: estimates_all exactly. Nothing learned: nothing. One learned: that one."""
    learner = OutcomeLearner(ARMS, LearnerConfig())
    segments = [f"s{i}" for i in range(12)]
    _learn(learner, segments, 30)
    full = learner.estimates_all()
    changed = learner.estimates_changed()
    assert list(changed) == list(full)
    assert all(_same(changed[s], full[s]) for s in segments)
    assert learner.estimates_changed() == {}
    _learn(learner, ["s3"], 5, seed=2)
    changed = learner.estimates_changed()
    assert list(changed) == ["s3"]
    assert _same(changed["s3"], learner.estimates_all()["s3"])
    assert learner.beliefs["s3"] is changed["s3"]
    forced = learner.estimates_changed(force=True)
    assert list(forced) == segments
    assert all(_same(forced[s], learner.estimates_all()[s]) for s in segments)


@pytest.mark.parametrize("limit", [1, 5])
def test_the_learner_never_holds_more_than_max_segments(limit: int) -> None:
    """However many segments arrive, at most `limit` are held, in every structure."""
    learner = OutcomeLearner(ARMS, LearnerConfig(), max_segments=limit)
    _learn(learner, [f"flood{i}" for i in range(40)], 1)
    learner.estimates_changed()
    assert len(learner.stats) == len(learner.contexts) == len(learner.beliefs) == limit
    assert learner.evictions == 40 - limit


def test_idle_segments_are_refreshed_in_turn_a_few_per_round() -> None:
    """`refresh` others per round, those solved longest ago: every idle one within 3 rounds."""
    learner = OutcomeLearner(ARMS, LearnerConfig())
    segments = [f"s{i:02d}" for i in range(12)]
    _learn(learner, segments, 10)
    learner.estimates_changed()
    refreshed: list[str] = []
    for round_ in range(3):
        _learn(learner, ["s11"], 1, seed=10 + round_)
        changed = learner.estimates_changed(refresh=4)
        assert "s11" in changed
        assert len(changed) == 5
        refreshed += [s for s in changed if s != "s11"]
    assert sorted(refreshed) == sorted([*segments[:11], "s00"])  # s00 comes round again first
    # With every one within `refresh`, a round is estimates_all exactly.
    _learn(learner, ["s05"], 1, seed=20)
    changed = learner.estimates_changed(refresh=100)
    full = learner.estimates_all()
    assert list(changed) == segments
    assert all(_same(changed[s], full[s]) for s in segments)


@pytest.mark.parametrize("recency", [None, [0, 0, 1], ["a", 1, 2], [0, 1, 7], "0,1,2"])
def test_a_checkpoint_without_a_usable_order_restores_first_seen_first(recency: object) -> None:
    """Older checkpoints (no order) or a damaged one: evicted in first-seen order, no error."""
    big = OutcomeLearner(ARMS, LearnerConfig())
    _learn(big, ["a", "b", "c"], 2)
    state = json.loads(json.dumps(big.snapshot()))
    if recency is None:
        del state["recency"]
    else:
        state["recency"] = recency
    small = OutcomeLearner(ARMS, LearnerConfig(), max_segments=2)
    small.restore(state)
    assert list(small.stats) == ["b", "c"]


def test_a_backlog_of_changed_segments_is_solved_busiest_first_within_the_limit() -> None:
    """`limit` posteriors a call, the busiest first; the others stay changed for the next."""
    learner = OutcomeLearner(ARMS, LearnerConfig())
    _learn(learner, ["busy"], 30)
    _learn(learner, [f"new{i:02d}" for i in range(25)], 1)
    first = learner.estimates_changed(refresh=10, limit=10)
    assert len(first) == 10
    assert "busy" in first
    second = learner.estimates_changed(refresh=10, limit=10)
    third = learner.estimates_changed(refresh=10, limit=10)
    assert len(second) == 10
    assert set(first) | set(second) | set(third) == set(learner.stats)
    assert len(third) == 10  # the last 6 changed, and 4 refreshed (the limit holds)
    assert not learner.dirty
    assert learner.estimates_changed(force=True, limit=3).keys() == learner.stats.keys()
