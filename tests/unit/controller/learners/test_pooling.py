"""The ordered-arm smoothness prior and the pooled curve shape."""

import numpy as np
import pytest

from stopbandit.controller.learners.caps import capped_columns, pool_weights
from stopbandit.controller.learners.pooling import (
    deviation_step_sd,
    fit_shape,
    fit_shapes,
    pooled_posterior,
)
from stopbandit.controller.learners.smoothing import path_laplacian, smooth_posterior


def test_laplacian_of_a_path() -> None:
    """Rows sum to zero; ends have degree 1, the middle degree 2."""
    laplacian = path_laplacian(4)
    assert laplacian.sum(axis=1).tolist() == [0, 0, 0, 0]
    assert np.diag(laplacian).tolist() == [1, 2, 2, 1]


def test_plenty_of_data_keeps_its_own_values() -> None:
    """With precise observations everywhere the posterior equals the data."""
    y = np.array([0.2, 0.5, 0.9])
    mean, cov = smooth_posterior(y, np.full(3, 1e9), step_sd=0.01, level_mean=0, level_sd=10)
    assert mean == pytest.approx(y, abs=1e-5)
    assert np.diag(cov).max() < 1e-8


def test_an_arm_without_data_borrows_its_neighbour_with_growing_doubt() -> None:
    """Unobserved arms take the nearest observed value; variance grows with distance."""
    y = np.array([0.0, 0.0, 0.0, 0.7])
    precision = np.array([0.0, 0.0, 0.0, 1e6])
    mean, cov = smooth_posterior(y, precision, step_sd=0.05, level_mean=0.5, level_sd=10)
    assert mean == pytest.approx([0.7] * 4, abs=1e-3)
    variances = np.diag(cov)
    # step_sd^2 = 0.0025 per step away from the data (a random walk).
    assert variances[2] == pytest.approx(0.0025, rel=0.01)
    assert variances[0] == pytest.approx(3 * 0.0025, rel=0.01)


def test_neighbours_shrink_towards_each_other() -> None:
    """Two noisy neighbours end closer together than their raw means, never crossing."""
    y = np.array([0.40, 0.50])
    precision = np.array([100.0, 100.0])
    mean, _ = smooth_posterior(y, precision, step_sd=0.05, level_mean=0.5, level_sd=10)
    assert 0.40 < mean[0] < mean[1] < 0.50


def test_fit_shape_recovers_an_additive_layout() -> None:
    """level[s] + shape[k] is recovered exactly from complete noiseless data (shape centred)."""
    level = np.array([0.1, 0.5, 0.9])
    shape = np.array([-0.2, 0.0, 0.05, 0.15])
    y = level[:, None] + shape[None, :]
    fitted, weight = fit_shape(y, np.ones_like(y))
    assert fitted == pytest.approx(shape - shape.mean(), abs=1e-6)
    assert weight.tolist() == [3, 3, 3, 3]


def test_pooled_posterior_gives_a_new_arm_the_common_shape() -> None:
    """A segment that never played arm 0 expects the shape's step from its own level."""
    shape = np.array([-0.10, 0.0, 0.0])
    y = np.array([0.0, 0.6, 0.6])
    precision = np.array([0.0, 1e6, 1e6])
    mean, _ = pooled_posterior(
        y, precision, shape, np.array([1e6, 1e6, 1e6]), step_sd=0.01, level_sd=10
    )
    assert mean == pytest.approx([0.5, 0.6, 0.6], abs=2e-3)


def test_deviation_scale_is_the_floor_when_segments_share_one_shape() -> None:
    """Curves that are level shifts of one shape give no excess: the floor."""
    shape = np.array([-0.2, 0.0, 0.05, 0.15])
    y = np.array([0.1, 0.5, 0.9])[:, None] + shape[None, :]
    precision = np.full_like(y, 1e8)
    fitted, _ = fit_shape(y, precision)
    assert deviation_step_sd(y, precision, fitted, floor_sd=0.01) == pytest.approx(0.01)


def test_deviation_scale_grows_with_how_much_segments_differ() -> None:
    """Precise curves whose steps differ by +-0.1 from the shape estimate a step sd near 0.1."""
    y = np.array([[0.0, 0.1, 0.2, 0.3], [0.0, -0.1, -0.2, -0.3]])
    precision = np.full_like(y, 1e8)
    fitted, _ = fit_shape(y, precision)
    assert deviation_step_sd(y, precision, fitted, floor_sd=0.01) == pytest.approx(0.1, rel=1e-3)


def test_deviation_scale_discounts_sampling_noise() -> None:
    """Step differences no larger than the noise of the means leave the floor."""
    y = np.array([[0.0, 0.01, 0.0], [0.0, -0.01, 0.0]])
    precision = np.full_like(y, 1.0 / 0.01**2)  # each mean has sd 0.01
    fitted, _ = fit_shape(y, precision)
    assert deviation_step_sd(y, precision, fitted, floor_sd=0.005) == pytest.approx(0.005)


def test_pooled_posterior_of_a_stack_is_each_segment_on_its_own() -> None:
    """One batched call over segments gives exactly what one call per segment gives."""
    rng = np.random.default_rng(7)
    y = rng.random((5, 4))
    precision = np.where(rng.random((5, 4)) < 0.3, 0.0, rng.random((5, 4)) * 1e3)
    precision[2] = 0.0  # a segment with no data at all
    shape, shape_precision = np.array([-0.1, 0.0, 0.02, 0.0]), np.array([5.0, 9.0, 0.0, 3.0])
    mean, cov = pooled_posterior(y, precision, shape, shape_precision, step_sd=0.05, level_sd=1)
    for s in range(5):
        mean_s, cov_s = pooled_posterior(
            y[s], precision[s], shape, shape_precision, step_sd=0.05, level_sd=1
        )
        np.testing.assert_allclose(mean[s], mean_s, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(cov[s], cov_s, rtol=1e-12, atol=1e-15)


def _fleet_with_a_fake() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Six real segments on a rising curve, thin at arm 0; one fake segment, flat and constant."""
    shape = np.array([-0.20, -0.05, 0.0, 0.02, 0.03])
    level = np.array([0.3, 0.5, 0.6, 0.7, 0.8, 0.9])
    real_y = level[:, None] + shape[None, :]
    real_n = np.tile([20.0, 200.0, 2000.0, 400.0, 100.0], (6, 1))
    real_precision = real_n / 0.2
    # As much traffic as a real segment, all of it constant: variance 0, floored at 0.01.
    fake_n = real_n[:1]
    y = np.vstack([real_y, np.full((1, 5), 1.0)])
    n = np.vstack([real_n, fake_n])
    precision = np.vstack([real_precision, fake_n / 0.01])
    return shape, y, precision, n


def test_one_constant_segment_cannot_flatten_the_shape() -> None:
    """Capped (`pool_weights`), a fake flat segment keeps 3/4 of the shape's rise; uncapped, < 1/4.

    The fake's precision per observation is 20 times a real one's; capped, twice.
    """
    shape, y, precision, n = _fleet_with_a_fake()
    uncapped, _ = fit_shape(y, precision)
    capped, _ = fit_shape(y, precision, n)
    true_step = shape[-1] - shape[0]
    assert uncapped[-1] - uncapped[0] < 0.3 * true_step
    assert capped[-1] - capped[0] > 0.7 * true_step


def test_the_shape_is_solved_exactly_where_one_segment_holds_an_arm() -> None:
    """A segment seen at one arm only says nothing of the shape, however heavy (its level takes it).

    Alternating updates moved the shape there at the rate of the others' share of the arm:
    nowhere, after 25 of them, with the heavy segment holding nearly all of it (issue 14).
    """
    level = np.array([0.1, 0.5, 0.9])
    shape = np.array([-0.2, 0.0, 0.05, 0.15])
    y = level[:, None] + shape[None, :]
    precision = np.array([[1.0, 100.0, 100.0, 100.0]] * 3)
    alone, _ = fit_shape(y, precision)
    heavy = np.vstack([y, [[1.0, 0.0, 0.0, 0.0]]])
    heavy_precision = np.vstack([precision, [[1e4, 0.0, 0.0, 0.0]]])
    with_heavy, _ = fit_shape(heavy, heavy_precision)
    steps = np.diff(shape)
    assert np.diff(alone) == pytest.approx(steps, abs=1e-9)
    assert np.diff(with_heavy) == pytest.approx(steps, abs=1e-9)


def test_a_heavy_segment_at_both_ends_moves_the_shape_by_half_its_departure_at_most() -> None:
    """A fake flat segment at the two end arms, with 1,000 times the real traffic at arm 0.

    The real segments say the shape falls 0.23 from the top arm to the bottom one; the
    fake, that it is flat. Holding half of each end, the fake takes half of the fall away;
    uncapped, nearly all of it.
    """
    shape, y, precision, n = _fleet_with_a_fake()
    n[-1] = [20_000.0, 0.0, 0.0, 0.0, 20_000.0]
    precision[-1] = n[-1] / 0.01
    capped, _ = fit_shape(y, precision, n)
    uncapped, _ = fit_shape(y, precision)
    fall = shape[-1] - shape[0]
    assert capped[-1] - capped[0] == pytest.approx(0.5 * fall, rel=1e-6)
    assert uncapped[-1] - uncapped[0] < 0.1 * fall


def test_a_segment_the_arm_cap_cut_has_its_own_shape_with_its_weights_uncut() -> None:
    """The others see the capped fit; the cut segment, the fit with its own row as it was."""
    _, y, precision, n = _fleet_with_a_fake()
    n[-1] = [20_000.0, 0.0, 0.0, 0.0, 20_000.0]
    precision[-1] = n[-1] / 0.01
    uncut = pool_weights(precision, n, arm_cap=False)
    capped = capped_columns(uncut)
    (common, common_precision), own = fit_shapes(y, precision, n)
    assert list(own) == [6]
    assert common == pytest.approx(fit_shape(y, capped)[0], abs=1e-12)
    assert common_precision == pytest.approx(capped.sum(axis=0))
    weight = capped.copy()
    weight[6] = uncut[6]
    expected, expected_precision = fit_shape(y, weight)
    assert own[6][0] == pytest.approx(expected, abs=1e-9)
    assert own[6][1] == pytest.approx(expected_precision)
