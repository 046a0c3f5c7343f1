"""The cross-fitted, shrunk per-(segment, arm) reward model."""

import numpy as np
import pytest

from stopbandit.controller.ope import cross_fit, fit_cell_means, fold_assignment


def test_shrunk_cell_means_by_hand():
    """Shrinkage by m = 2 pseudo-rows of the arm mean.

    arm 0 rows y = [1, 0, 1] -> ȳ_0 = 2/3; arm 1 rows y = [1, 0] -> ȳ_1 = 1/2.
    (g0, a0): n=2, Σy=1 -> (1 + 2*2/3)/(2+2) = 7/12
    (g0, a1): n=0       -> (0 + 2*1/2)/(0+2) = 1/2
    (g1, a0): n=1, Σy=1 -> (1 + 2*2/3)/(1+2) = 7/9
    (g1, a1): n=2, Σy=1 -> (1 + 2*1/2)/(2+2) = 1/2
    """
    table = fit_cell_means(
        np.array([1.0, 0.0, 1.0, 1.0, 0.0]),
        np.array([0, 0, 0, 1, 1]),
        np.array([0, 0, 1, 1, 1]),
        n_arms=2,
        n_groups=2,
        prior_rows=2.0,
    )
    np.testing.assert_allclose(table, [[7 / 12, 1 / 2], [7 / 9, 1 / 2]], rtol=1e-12)


def test_no_shrinkage_gives_raw_cell_means_and_arm_mean_for_empty_cells():
    """With m = 0, a cell with rows is its own mean; an empty cell falls back to ȳ_a."""
    table = fit_cell_means(
        np.array([1.0, 0.0, 3.0]),
        np.array([0, 0, 0]),
        np.array([0, 0, 1]),
        n_arms=2,
        n_groups=3,
        prior_rows=0.0,
    )
    # arm 0: g0 mean 0.5, g1 mean 3, g2 empty -> ȳ_0 = 4/3; arm 1 unseen -> ȳ = 4/3
    np.testing.assert_allclose(table, [[0.5, 4 / 3], [3.0, 4 / 3], [4 / 3, 4 / 3]])


def test_empty_training_set_predicts_zero():
    """No rows at all: q̂ = 0 (so DR falls back to IPS)."""
    table = fit_cell_means(
        np.array([]), np.array([], np.int64), np.array([], np.int64), n_arms=2, n_groups=1
    )
    np.testing.assert_array_equal(table, [[0.0, 0.0]])


def test_cross_fit_uses_only_the_other_folds():
    """Fold 0 rows all have y = 1, fold 1 rows y = 0: each fold must see the other's value."""
    folds = np.array([0, 1, 0, 1, 0, 1])
    y = (folds == 0).astype(np.float64)
    q = cross_fit(y, np.array([0, 0, 1, 1, 0, 1]), np.zeros(6, np.int64), n_arms=2, folds=folds)
    np.testing.assert_array_equal(q[folds == 0], 0.0)
    np.testing.assert_array_equal(q[folds == 1], 1.0)


def test_changing_a_fold_never_changes_its_own_predictions():
    """By construction: perturbing y on fold k moves only other folds' q̂."""
    rng = np.random.default_rng(3)
    n = 300
    arm = rng.integers(0, 4, n)
    group = rng.integers(0, 3, n)
    y = rng.random(n)
    folds = fold_assignment(n, 5, seed=11)
    base = cross_fit(y, arm, group, n_arms=4, folds=folds)
    for k in range(5):
        moved = y + 100.0 * (folds == k)
        q = cross_fit(moved, arm, group, n_arms=4, folds=folds)
        np.testing.assert_array_equal(q[folds == k], base[folds == k])
        assert np.all(q[folds != k] != base[folds != k])


def test_each_fold_matches_a_model_fitted_on_the_rest():
    """Row i's predictions equal fit_cell_means on the rows outside its fold."""
    rng = np.random.default_rng(4)
    n = 120
    arm, group, y = rng.integers(0, 3, n), rng.integers(0, 2, n), rng.random(n)
    folds = fold_assignment(n, 3, seed=0)
    q = cross_fit(y, arm, group, n_arms=3, folds=folds)
    for k in range(3):
        rest = folds != k
        table = fit_cell_means(y[rest], arm[rest], group[rest], n_arms=3, n_groups=2)
        np.testing.assert_allclose(q[folds == k], table[group[folds == k]])


def test_fold_assignment_is_seeded_and_balanced():
    """Same seed, same folds; sizes differ by at most one."""
    a, b = fold_assignment(103, 5, seed=9), fold_assignment(103, 5, seed=9)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, fold_assignment(103, 5, seed=10))
    assert sorted(np.bincount(a).tolist()) == [20, 20, 21, 21, 21]


@pytest.mark.parametrize(
    ("n", "n_folds", "message"),
    [(0, 5, "n must be >= 1"), (10, 1, "n_folds must be >= 2")],
)
def test_fold_assignment_rejects(n, n_folds, message):
    """Folds need rows and at least two folds."""
    with pytest.raises(ValueError, match=message):
        fold_assignment(n, n_folds)


def test_negative_prior_rows_is_rejected():
    """A negative pseudo-count has no meaning."""
    with pytest.raises(ValueError, match="prior_rows must be >= 0"):
        fit_cell_means(
            np.ones(1),
            np.zeros(1, np.int64),
            np.zeros(1, np.int64),
            n_arms=1,
            n_groups=1,
            prior_rows=-1.0,
        )
