"""A hand-written log for replay's unit tests: join, propensities, reward weights, naming.

Its config, lines and per-row rewards, the helpers that write lines and raw
events, and the log replayed, evaluated and made a document once, as fixtures.
"""

from __future__ import annotations

import json

import pytest

from stopbandit.controller.config import load_config
from stopbandit.controller.replay.document import build_document
from stopbandit.controller.replay.evaluate import evaluate
from stopbandit.controller.replay.feed import RawEvent, replay
from stopbandit.controller.replay.settings import ReplaySettings
from stopbandit.controller.replay.targets import fixed_targets, logged_target

# reward = 2 EM - 10 * tokens / 1000 = 2 EM - 0.01 tokens
CONFIG = load_config(
    None,
    arms=[0.5, 1.0],
    reference_arm=1.0,
    default_arm=1.0,
    reward={"em_weight": 2.0, "token_cost_per_1k": 10.0},
)
PMF_A = [[0.5, 0.25], [1.0, 0.75]]
PMF_B = [[0.5, 0.5], [1.0, 0.5]]


def decision_line(rid, segment, threshold, probability, pmf=None):
    """One decision line."""
    doc = {"type": "decision", "v": 1, "request_id": rid, "ts": 100.0, "segment": segment,
           "threshold": threshold, "probability": probability, "policy_version": 1}  # fmt: skip
    if pmf is not None:
        doc["pmf"] = pmf
    return json.dumps(doc)


def outcome_line(rid, segment, em, tokens):
    """One outcome line."""
    return json.dumps({"type": "outcome", "v": 1, "request_id": rid, "ts": 101.0,
                       "segment": segment, "em": em, "tokens": tokens})  # fmt: skip


LINES = [
    decision_line("r1", "a", 0.5, 0.25, PMF_A),
    outcome_line("r1", "a", 1.0, 100),  # reward 2 - 1 = 1
    outcome_line("r2", "a", 0.0, 300),  # outcome first; reward -3
    decision_line("r2", "a", 1.0, 0.75, PMF_A),
    decision_line("r3", "b", 1.0, 0.5, PMF_B),
    outcome_line("r3", "b", 1.0, 200),  # reward 0
    decision_line("r4", "b", 0.5, 0.5, PMF_B),
    outcome_line("r4", "b", 1.0, 50),  # reward 1.5
    "not json",
    decision_line("r5", "b", 0.7, 0.5),  # not an arm
    outcome_line("r1", "a", 1.0, 100),  # already joined
    decision_line("r6", "a", 1.0, 1.0),  # fallback decision: no pmf, p = 1
    outcome_line("r6", "a", 0.0, 400),  # reward -4
    outcome_line("r7", "b", 1.0, 10),  # never joins
]
REWARDS = [1.0, -3.0, 0.0, 1.5, -4.0]
# The hand-computed formulas hold on cells of a row or two: estimate every observed cell
# (the default min_ess would bound them all; tests/unit/controller/replay/test_bounds.py).
POINT = ReplaySettings(min_ess=0.0)


def raw_events(lines):
    """Lines as raw events of a file."""
    return [RawEvent("test.jsonl", i + 1, None, line.encode()) for i, line in enumerate(lines)]


@pytest.fixture
def config():
    """The config of the hand-written log (arms 0.5 and 1; reward 2 EM - 0.01 tokens)."""
    return CONFIG


@pytest.fixture
def lines():
    """The hand-written log's lines (a fresh list: tests may slice or repeat it)."""
    return list(LINES)


@pytest.fixture
def rewards():
    """The per-row reward of each interaction the lines join, in join order."""
    return list(REWARDS)


@pytest.fixture
def raw():
    """Turn lines into the raw events of a file."""
    return raw_events


@pytest.fixture
def decision():
    """Write one decision line."""
    return decision_line


@pytest.fixture
def outcome():
    """Write one outcome line."""
    return outcome_line


@pytest.fixture(scope="module")
def log():
    """The hand-written log replayed without learning."""
    return replay(raw_events(LINES), CONFIG, learn=False)


@pytest.fixture(scope="module")
def evaluation(log):
    """Every fixed threshold and the logged policy."""
    return evaluate(log, [logged_target(), *fixed_targets(log)], CONFIG.reward, settings=POINT)


@pytest.fixture(scope="module")
def document(log, evaluation):
    """The JSON document of `evaluation`."""
    targets = [logged_target(), *fixed_targets(log)]
    return build_document(
        log, evaluation, targets, CONFIG.reward,
        sources=["test"], publish_every=1000, folds=5, fold_seed=0, confidence=0.95,
    )  # fmt: skip
