"""Replay's join on the hand-written log (conftest): interactions, propensities, invalid lines."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from stopbandit.controller.core import ControllerCore
from stopbandit.controller.replay.feed import replay
from stopbandit.streams.codec import decode


def test_join_gives_interactions_in_join_order_with_their_propensities(log):
    """Both arrival orders join; each row carries its segment, arm, p, EM and tokens."""
    assert log.segments == ["a", "b"]
    assert log.segment.tolist() == [0, 0, 1, 1, 0]
    assert log.arm.tolist() == [0, 1, 1, 0, 1]
    assert log.probability.tolist() == [0.25, 0.75, 0.5, 0.5, 1.0]
    assert log.em.tolist() == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert log.tokens.tolist() == [100.0, 300.0, 200.0, 50.0, 400.0]


def test_logged_pmfs_are_mapped_onto_the_configured_arms(log):
    """A decision's pmf becomes a row over the arms; a fallback (p = 1, no pmf) a point mass."""
    assert log.logged_pmf.tolist() == [
        [0.25, 0.75], [0.25, 0.75], [0.5, 0.5], [0.5, 0.5], [0.0, 1.0],
    ]  # fmt: skip


def test_invalid_lines_are_counted_by_kind_and_logged_never_fatal(config, lines, raw):
    """Bad JSON and unknown arms are counted and logged; duplicates and orphans are counted."""
    with capture_logs() as events:
        result = replay(raw(lines), config, learn=False)
    stats = result.stats.to_json()
    assert stats["invalid"] == {"arm": 1, "json": 1}
    assert stats["events"] == 14
    assert stats["decisions"] == 5
    assert stats["join"]["already_joined"] == 1
    assert stats["pending_at_end"] == 1
    rejected = [e for e in events if e["event"] == "replay.invalid_event"]
    assert [(e["kind"], e["position"]) for e in rejected] == [("json", 9), ("arm", 10)]


def test_nothing_joined_is_an_error(config, raw, outcome):
    """A log without a single joined pair has nothing to evaluate."""
    with pytest.raises(ValueError, match="nothing to replay"):
        replay(raw(["not json", outcome("x", "a", 1.0, 1)]), config, learn=False)


def test_learned_policy_scores_each_interaction_with_the_policy_built_before_it(config, lines, raw):
    """No peeking: row 2 is scored with what a core trained on rows 0-1 only builds.

    Rows before the first build use the default arm.
    """
    result = replay(raw(lines), config, publish_every=2)
    assert result.learned_pmf[0].tolist() == [0.0, 1.0]
    assert result.learned_pmf[1].tolist() == [0.0, 1.0]
    core = ControllerCore(config)
    for line in lines[:4]:
        event = decode(None, line.encode())
        core.offer(event, event.ts)
    policies = {p.segment: p for p in core.build_policies(101.0)}
    expected = policies.get("b") or policies["*"]
    assert result.learned_pmf[2].tolist() == expected.pmf
