"""The ordered-arm smoothness prior and the pooled curve shape."""

import numpy as np
import pytest

from stopbandit.controller.learners.pooling import (
    capped_rows,
    deviation_step_sd,
    fit_shape,
    pool_weights,
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
