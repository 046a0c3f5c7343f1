"""The one rule for "is this value an arm"."""

from __future__ import annotations

from stopbandit.streams.arms import Arms


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
