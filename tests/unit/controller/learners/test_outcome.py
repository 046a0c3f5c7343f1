"""The outcome learner across knobs: arms by index, the smoothness prior's steps in log2 budget."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stopbandit.controller.config import LearnerConfig
from stopbandit.controller.learners.outcome import OutcomeLearner, step_scales
from stopbandit.policies.exploration import MIN_SUPPORT
from stopbandit.streams.join import Interaction

BUDGETS = [512.0, 1024.0, 2048.0, 4096.0, 8192.0, 32768.0]


def test_thresholds_and_doubling_budgets_keep_the_one_sd_path() -> None:
    """Every threshold list, and budgets doubling at each arm, have no step scaling."""
    assert step_scales("confidence", [0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0]) is None
    assert step_scales("confidence", [1.0, 2.0, 8.0]) is None  # thresholds go by index
    assert step_scales("token_budget", [512.0, 1024.0, 2048.0, 4096.0]) is None


def test_a_longer_step_in_log2_budget_has_a_wider_prior() -> None:
    """8192 to 32768 is two doublings: sqrt(2) the sd of the one-doubling steps."""
    scales = step_scales("token_budget", BUDGETS)
    assert scales is not None
    assert scales.tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0, math.sqrt(2.0)])


def _learned(knob: str) -> OutcomeLearner:
    """Two segments with data on every budget but the top one, where only one has data."""
    learner = OutcomeLearner(BUDGETS, LearnerConfig(), knob=knob)  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    for i in range(3000):
        segment = "easy" if i % 2 else "hard"
        top = len(BUDGETS) - (1 if segment == "easy" else 2)
        arm = int(rng.integers(0, top + 1))
        em = float(rng.random() < (0.5 + 0.05 * arm))
        tokens = int(min(BUDGETS[arm], 3000.0))
        interaction = Interaction(
            request_id=f"r{i}",
            segment=segment,
            context={},
            threshold=BUDGETS[arm],
            probability=1.0 / (top + 1),
            policy_version=1,
            em=em,
            tokens=tokens,
            decision_ts=float(i),
            outcome_ts=float(i),
        )
        learner.learn_one(interaction, [(arm, em, float(tokens), 1.0 / (top + 1))])
    return learner


def test_the_budget_knob_leaves_an_unseen_long_step_less_certain() -> None:
    """With no data at 32768, its EM is less certain under budgets than by index alone."""
    by_budget = _learned("token_budget").estimates("hard")
    by_index = _learned("confidence").estimates("hard")
    assert by_budget.em_cov[-1, -1] > by_index.em_cov[-1, -1]
    # The arms with data are estimated alike either way.
    assert by_budget.em[:4] == pytest.approx(by_index.em[:4], abs=0.01)


def _interaction(i: int, segment: str, threshold: float, em: float) -> Interaction:
    return Interaction(
        request_id=f"{segment}-{i}",
        segment=segment,
        context={},
        threshold=threshold,
        probability=1.0,
        policy_version=1,
        em=em,
        tokens=1000,
        decision_ts=float(i),
        outcome_ts=float(i),
    )


def test_one_segments_traffic_on_an_arm_lends_the_others_little_support_there() -> None:
    """3,000 outcomes of one segment at 0.5 leave 0.5 unsupported (not greedy-eligible) elsewhere.

    Two real segments have 5 outcomes each at 0.5; what the heavy one lends is capped at the
    others' traffic there (`pooling.capped_columns`). Uncapped, it lent 300.
    """
    arms = [0.5, 0.9, 1.0]
    learner = OutcomeLearner(arms, LearnerConfig())
    for segment in ("a", "b"):
        for i in range(200):
            arm = arms[0] if i < 5 else arms[1 + i % 2]
            learner.learn_one(
                _interaction(i, segment, arm, 0.5), [(arms.index(arm), 0.5, 1000.0, 1.0)]
            )
    for i in range(3000):
        learner.learn_one(_interaction(i, "heavy", arms[0], 1.0), [(0, 1.0, 1000.0, 1.0)])
    support = learner.estimates_all()["a"].support
    assert support[0] < MIN_SUPPORT
    assert support[1] > MIN_SUPPORT
