"""The one rule for "is this value an arm"."""

from __future__ import annotations

import math

import pytest

from stopbandit.streams.arms import Arms, Knob, arm_label, arm_problem, reference_arm


def test_exact_and_float_noise_values_find_their_arm() -> None:
    """A value read back from JSON matches its arm within isclose's tolerance."""
    arms = Arms([0.5, 0.9, 0.95, 1.0])
    assert arms.index(0.95) == 2
    assert arms.index(0.1 + 0.85) == 2
    assert 0.1 + 0.85 in arms


def test_values_that_are_no_arm_are_none_and_repeat_answers_stay_the_same() -> None:
    """A miss is None every time, also after it was remembered."""
    arms = Arms([512, 1024, 32768])
    assert arms.index(1024.0) == 1
    assert arms.index(1000.0) is None
    assert arms.index(1000.0) is None
    assert "1024" not in arms
    assert len(arms) == 3


def test_misses_are_remembered_only_up_to_a_bound() -> None:
    """A flood of distinct bad values does not grow the lookup without bound."""
    arms = Arms([0.5, 1.0])
    for k in range(5000):
        assert arms.index(2.0 + k) is None
    assert len(arms._index) <= 2 + 1024


@pytest.mark.parametrize(
    ("knob", "arms", "field"),
    [
        pytest.param("confidence", [0.5, 1.5], "arms.1", id="threshold above 1"),
        pytest.param("confidence", [-0.1, 1.0], "arms.0", id="negative threshold"),
        pytest.param("confidence", [512.0, 1024.0], "arms.0", id="budgets as thresholds"),
        pytest.param("token_budget", [0.5, 1024.0], "arms.0", id="threshold as a budget"),
        pytest.param("token_budget", [0.0, 1024.0], "arms.0", id="zero budget"),
        pytest.param("token_budget", [512.5, 1024.0], "arms.0", id="fractional budget"),
        pytest.param("token_budget", [1024.0, 512.0], "arms", id="descending budgets"),
        pytest.param("token_budget", [512.0, 512.0], "arms", id="repeated budget"),
        pytest.param("token_budget", [512.0, math.inf], "arms.1", id="infinite budget"),
        pytest.param("confidence", [0.5, math.nan], "arms.1", id="NaN threshold"),
    ],
)
def test_each_knob_rejects_what_it_forbids(knob: Knob, arms: list[float], field: str) -> None:
    """A bad arm list is named by its field, with a reason."""
    problem = arm_problem(knob, arms)
    assert problem is not None
    assert problem[0] == field
    assert problem[1]


@pytest.mark.parametrize(
    ("knob", "arms"),
    [
        pytest.param("confidence", [0.0, 0.5, 0.95, 1.0], id="thresholds"),
        pytest.param("token_budget", [1.0, 512.0, 1024.0, 32768.0], id="budgets"),
        pytest.param("token_budget", [512.0, 131072.0], id="two budgets"),
    ],
)
def test_each_knob_accepts_its_arms(knob: Knob, arms: list[float]) -> None:
    """Ascending arms within the knob's rules are usable."""
    assert arm_problem(knob, arms) is None


def test_the_reference_arm_is_the_one_that_never_stops_early() -> None:
    """1.0 for thresholds (SCHEMA's table), the largest budget for budgets."""
    assert reference_arm("confidence", [0.5, 0.9, 1.0]) == 1.0
    assert reference_arm("token_budget", [512.0, 2048.0, 32768.0]) == 32768.0


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (0.95, "0.95"),
        (1.0, "1"),
        (0.5, "0.5"),
        (2048.0, "2048"),
        (32768.0, "32768"),
        (1048576.0, "1048576"),
    ],
)
def test_arm_labels_read_as_written(value: float, label: str) -> None:
    """Thresholds as :g writes them; budgets as integers, never in exponent form."""
    assert arm_label(value) == label
    if value < 1e5:
        assert arm_label(value) == f"{value:g}"
