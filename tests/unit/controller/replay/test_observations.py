"""Replay of outcomes with counterfactual traces: what is kept, what is dropped and counted."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stopbandit.controller.config import load_config
from stopbandit.controller.replay.feed import RawEvent, replay

CONFIG = load_config(
    None,
    arms=[0.5, 0.8, 1.0],
    reference_arm=1.0,
    default_arm=1.0,
    reward={"em_weight": 1.0, "token_cost_per_1k": 10.0},
)
PMF = [[0.5, 0.2], [0.8, 0.3], [1.0, 0.5]]


def pair(rid, threshold, probability, em, tokens, *, trace=None):
    """A decision and its outcome, the outcome with `trace` as its counterfactual."""
    decision = {"type": "decision", "v": 1, "request_id": rid, "ts": 100.0, "segment": "s",
                "threshold": threshold, "probability": probability, "policy_version": 1,
                "pmf": PMF}  # fmt: skip
    outcome = {"type": "outcome", "v": 1, "request_id": rid, "ts": 101.0, "segment": "s",
               "em": em, "tokens": tokens}  # fmt: skip
    if trace is not None:
        outcome["counterfactual"] = trace
    return [json.dumps(decision), json.dumps(outcome)]


LINES = [
    *pair("r1", 1.0, 0.5, 1.0, 300, trace=[[0.5, 0.0, 100], [0.8, 1.0, 200]]),  # kept, complete
    *pair("r2", 1.0, 0.5, 0.0, 300, trace=[[0.8, 1.0, 250]]),  # kept, no 0.5: incomplete
    *pair("r3", 0.8, 0.3, 1.0, 200, trace=[[0.7, 1.0, 100]]),  # 0.7: unknown_arm
    *pair("r4", 0.8, 0.3, 0.0, 200, trace=[[0.5, 1.0, 50], [1.0, 1.0, 150]]),  # not below
    *pair("r5", 1.0, 0.5, 1.0, 300, trace=[[0.8, 1.0, 200], [0.5, 1.0, 100]]),  # decoder: order
    *pair("r6", 0.5, 0.2, 1.0, 90),  # no trace
]


def raw_lines(lines):
    """Lines as raw events of a file."""
    return [RawEvent("traces.jsonl", i + 1, None, line.encode()) for i, line in enumerate(lines)]


@pytest.fixture(scope="module")
def log():
    """The traced lines replayed without learning."""
    return replay(raw_lines(LINES), CONFIG, learn=False)


def test_kept_traces_add_their_arms_to_the_played_one(log):
    """r1 is seen at every arm, r2 at 0.8 and 1.0; dropped traces leave the played arm alone."""
    assert log.observations is not None
    assert log.observations.observed.tolist() == [
        [True, True, True],
        [False, True, True],
        [False, True, False],
        [False, True, False],
        [False, False, True],
        [True, False, False],
    ]
    assert log.observations.traced.tolist() == [True, True, False, False, False, False]


def test_observed_outcomes_are_the_played_and_the_traced_ones_nan_elsewhere(log):
    """EM and tokens per arm: the trace's entries at its arms, the outcome's at the played arm."""
    em, tokens = log.observations.em, log.observations.tokens
    assert em[0].tolist() == [0.0, 1.0, 1.0]
    assert tokens[0].tolist() == [100.0, 200.0, 300.0]
    assert math.isnan(em[1, 0])
    assert tokens[1, 1:].tolist() == [250.0, 300.0]
    np.testing.assert_array_equal(em[np.arange(6), log.arm], log.em)


def test_traces_are_counted_kept_incomplete_and_dropped_by_reason(log):
    """The same rules as the core's, and the decoder's drops, in `input.traces`."""
    assert log.stats.to_json()["traces"] == {
        "kept": 2,
        "incomplete": 1,
        "dropped": {"not_below_played": 1, "order": 1, "unknown_arm": 1},
    }
    assert log.observations.incomplete == 1


def test_replay_drops_what_the_core_drops():
    """With learning, the core counts the same join-time drops as replay does."""
    learned = replay(raw_lines(LINES), CONFIG)
    dropped = dict(learned.core.counterfactual_dropped)
    assert dropped == {"unknown_arm": 1, "not_below_played": 1}
    assert learned.stats.traces.dropped["unknown_arm"] == dropped["unknown_arm"]
    np.testing.assert_array_equal(
        learned.observations.observed,
        replay(raw_lines(LINES), CONFIG, learn=False).observations.observed,
    )


def test_a_log_without_traces_has_no_observations_and_no_trace_counts():
    """Nothing changes for a log without traces: no matrices, no `traces` in the input."""
    plain = replay(raw_lines(LINES[-2:]), CONFIG, learn=False)
    assert plain.observations is None
    assert "traces" not in plain.stats.to_json()


def test_a_log_whose_traces_were_all_dropped_has_no_observations():
    """Every trace broke a rule: counted, but nothing observed beyond the played arms."""
    dropped = replay(raw_lines(LINES[4:8]), CONFIG, learn=False)
    assert dropped.observations is None
    assert dropped.stats.to_json()["traces"]["dropped"] == {
        "not_below_played": 1, "unknown_arm": 1,
    }  # fmt: skip
