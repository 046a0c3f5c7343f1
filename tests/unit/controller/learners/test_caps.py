"""The pool's caps: no segment dominates what all share."""

import numpy as np
import pytest

from stopbandit.controller.learners.caps import capped_columns, capped_rows, pool_weights


def test_pool_weights_leave_comparable_segments_alone() -> None:
    """Segments within the caps keep their precisions exactly."""
    precision = np.array([[100.0, 50.0], [80.0, 60.0], [120.0, 40.0]])
    counts = precision * 0.2
    assert pool_weights(precision, counts) == pytest.approx(precision)


def test_pool_weights_cap_per_observation_and_per_segment() -> None:
    """No segment above 2x the arm's median precision per observation, nor 3x the median total."""
    precision = np.array([[10.0, 10.0], [10.0, 10.0], [10.0, 10.0], [1e6, 0.0]])
    counts = np.array([[2.0, 2.0], [2.0, 2.0], [2.0, 2.0], [2.0, 0.0]])
    weights = pool_weights(precision, counts)
    assert weights[:3] == pytest.approx(precision[:3])
    # Per observation: 2 x the median 5 per observation x 2 observations = 20.
    assert weights[3, 0] == pytest.approx(20.0)
    assert capped_rows(np.array([[1.0], [1.0], [100.0]]))[2, 0] == pytest.approx(3.0)


def test_the_precision_cap_is_per_arm() -> None:
    """An arm where every segment is precise (tokens under a small budget) keeps its precision."""
    precision = np.array([[1000.0, 10.0], [1000.0, 10.0], [1000.0, 10.0]])
    counts = np.full((3, 2), 2.0)
    assert pool_weights(precision, counts) == pytest.approx(precision)


def test_no_segment_holds_more_than_half_of_an_arm() -> None:
    """Capped by the rest of its column where 3 or more segments share an arm; else untouched."""
    weight = np.array([[10.0, 5.0, 0.0, 1.0], [10.0, 5.0, 0.0, 0.0], [1e6, 4.0, 7.0, 100.0]])
    capped = capped_columns(weight)
    assert capped[:, 0].tolist() == [10.0, 10.0, 20.0]
    # Comparable segments, one segment alone, and two segments keep their weights.
    assert capped[:, 1:] == pytest.approx(weight[:, 1:])
    shares = capped / capped.sum(axis=0)
    assert (shares[:, :2] <= 0.5 + 1e-12).all()
