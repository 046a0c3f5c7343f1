"""Posterior over ordered arms under a smoothness prior (a Gaussian random walk).

Thresholds are ordered, and near the top the EM curve is nearly flat: the
EM of one arm says a lot about its neighbours'. The prior makes that
explicit: neighbouring arms differ by Normal(0, step_sd^2) (a first-order
Gaussian Markov random field on the path of arms), and the overall level
is Normal(level_mean, level_sd^2). Per-arm observations y_k with precision
d_k (n_k / variance) then give the exact Gaussian posterior:

    Q = L / step_sd^2 + I / level_sd^2        (L: the path graph's Laplacian)
    cov = (Q + diag(d))^-1
    mean = cov @ (level_mean / level_sd^2 * 1 + d * y)

(Rue & Held, *Gaussian Markov Random Fields*, 2005, ch. 3.) An arm with no
data gets its neighbours' value with a variance that grows by step_sd^2
per step away from the data; an arm with plenty of data keeps its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray


def path_laplacian(arms: int) -> NDArray[np.float64]:
    """The Laplacian of the path graph 0 - 1 - ... - (arms - 1)."""
    laplacian = np.zeros((arms, arms))
    for k in range(arms - 1):
        laplacian[k, k] += 1.0
        laplacian[k + 1, k + 1] += 1.0
        laplacian[k, k + 1] -= 1.0
        laplacian[k + 1, k] -= 1.0
    return laplacian


def smooth_posterior(
    y: NDArray[np.float64],
    precision: NDArray[np.float64],
    *,
    step_sd: float | NDArray[np.float64],
    level_mean: float | NDArray[np.float64],
    level_sd: float,
    information: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Posterior mean and covariance of the per-arm values, of one curve or a stack of them.

    Args:
        y: observed mean per arm (ignored where `precision` is 0), shape (K,) or (S, K).
        precision: information per arm, n_k / variance_k (0 for no data), shaped like `y`.
        step_sd: prior standard deviation of the difference between neighbouring arms:
            one for all, or one per step of each curve, shape (..., K - 1).
        level_mean: prior mean of the overall level (one per curve).
        level_sd: prior standard deviation of the overall level (large: vague).
        information: the data's information (matrix (..., K, K), vector (..., K)) where
            observations of different arms are correlated (paired requests); it
            replaces diag(precision) and precision * y.

    Returns:
        (mean, covariance) of the posterior, shapes (..., K) and (..., K, K).
    """
    arms = y.shape[-1]
    if np.ndim(step_sd) == 0:
        prior_precision = path_laplacian(arms) / float(step_sd) ** 2 + np.eye(arms) / level_sd**2
    else:
        # One prior sd per step between neighbours (per curve): a weighted path Laplacian.
        difference = np.diff(np.eye(arms), axis=0)
        edge_precision = 1.0 / np.asarray(step_sd, dtype=np.float64) ** 2
        prior_precision = (
            np.einsum("ek,...e,el->...kl", difference, edge_precision, difference)
            + np.eye(arms) / level_sd**2
        )
    if information is None:
        data_matrix = precision[..., None] * np.eye(arms)
        data_vector = precision * np.where(precision > 0.0, y, 0.0)
    else:
        data_matrix, data_vector = information
    cov = np.linalg.inv(prior_precision + data_matrix)
    cov = (cov + np.swapaxes(cov, -1, -2)) / 2.0
    total = np.asarray(level_mean)[..., None] / level_sd**2 + data_vector
    mean = (cov @ total[..., None])[..., 0]
    return np.asarray(mean, dtype=np.float64), np.asarray(cov, dtype=np.float64)
