"""Validation of estimator inputs, shared by every estimator.

Each check converts its input to a float64 or int64 numpy array and raises a
ValueError naming the argument and the rule it broke, so that a caller who
joined the log wrongly learns which column is wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

PMF_TOLERANCE = 1e-6


def vector(name: str, values: NDArray[Any]) -> NDArray[np.float64]:
    """Return `values` as a finite, non-empty 1-D float64 array."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return array


def logged_probability(values: NDArray[Any]) -> NDArray[np.float64]:
    """Return propensities p_i, each in (0, 1]: a logged arm was drawn, so p_i > 0."""
    array = vector("logged_probability", values)
    if np.any(array <= 0.0) or np.any(array > 1.0):
        raise ValueError("logged_probability must be in (0, 1]")
    return array


def target_probability(values: NDArray[Any]) -> NDArray[np.float64]:
    """Return target probabilities π(a_i|x_i), each in [0, 1]."""
    array = vector("target_probability", values)
    if np.any(array < 0.0) or np.any(array > 1.0):
        raise ValueError("target_probability must be in [0, 1]")
    return array


def target_pmf(
    values: NDArray[Any], name: str = "target_pmf", *, partial: bool = False
) -> NDArray[np.float64]:
    """Return an n x K matrix whose rows are pmfs over the arms.

    With `partial`, a row may sum to less than 1: the part of a pmf on the
    arms whose outcomes the log identifies (`controller.ope.bounds`).
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:  # noqa: PLR2004
        raise ValueError(f"{name} must be a non-empty n x K matrix, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    if np.any(array < 0.0) or np.any(array > 1.0):
        raise ValueError(f"{name} entries must be in [0, 1]")
    sums = array.sum(axis=1)
    if partial:
        if np.any(sums > 1.0 + PMF_TOLERANCE):
            raise ValueError(f"{name} rows must sum to at most 1 (within {PMF_TOLERANCE})")
    elif np.any(np.abs(sums - 1.0) > PMF_TOLERANCE):
        raise ValueError(f"{name} rows must sum to 1 (within {PMF_TOLERANCE})")
    return array


def indices(name: str, values: NDArray[Any], upper: int | None = None) -> NDArray[np.int64]:
    """Return a 1-D array of integer indices in [0, upper), or >= 0 when upper is None."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    if np.any(array < 0):
        raise ValueError(f"{name} must be >= 0")
    if upper is not None and np.any(array >= upper):
        raise ValueError(f"{name} must be < {upper}")
    return array.astype(np.int64)


def same_length(**arrays: NDArray[Any]) -> int:
    """Return the common length of `arrays`, or raise naming the lengths."""
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"inputs must have the same length, got {lengths}")
    return next(iter(lengths.values()))


def confidence(level: float) -> float:
    """Return a confidence level strictly between 0 and 1."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {level}")
    return float(level)


def arm_probability(pmf: NDArray[np.float64], arm: NDArray[np.int64]) -> NDArray[np.float64]:
    """Return pmf[i, arm[i]] for every row i: the probability of the logged arm."""
    return pmf[np.arange(pmf.shape[0]), arm]


def matches_pmf(
    target_prob: NDArray[np.float64], pmf: NDArray[np.float64], arm: NDArray[np.int64]
) -> None:
    """Raise unless target_probability[i] == target_pmf[i, arm[i]] (within the pmf tolerance)."""
    if np.any(np.abs(arm_probability(pmf, arm) - target_prob) > PMF_TOLERANCE):
        raise ValueError("target_probability must equal target_pmf[i, arm[i]] on every row")


def optional_pmf(
    target_prob: NDArray[Any],
    pmf: NDArray[Any] | None,
    arm: NDArray[Any] | None,
    group: NDArray[Any] | None = None,
) -> None:
    """Check an optional (target_pmf, arm[, group]) set against target_probability.

    target_pmf and arm come together or not at all, and group only with
    them (it is used for support warnings alone); when given, they must have
    n rows and agree with target_probability on the logged arm.
    """
    if (pmf is None) != (arm is None):
        raise ValueError("target_pmf and arm must be given together")
    if group is not None and pmf is None:
        raise ValueError("group is only used with target_pmf and arm")
    if pmf is None or arm is None:
        return
    target = target_probability(target_prob)
    matrix = target_pmf(pmf)
    arms = indices("arm", arm, matrix.shape[1])
    same_length(target_probability=target, target_pmf=matrix, arm=arms)
    matches_pmf(target, matrix, arms)


def observed(values: NDArray[Any], shape: tuple[int, ...]) -> NDArray[np.bool_]:
    """Return an n x K boolean matrix of which arms each row observed, of the pmf's shape."""
    array = np.asarray(values)
    if array.dtype != np.bool_:
        raise ValueError(f"observed must be boolean, got dtype {array.dtype}")
    if array.shape != shape:
        raise ValueError(f"observed must have target_pmf's shape {shape}, got {array.shape}")
    return array


def observed_values(
    name: str, values: NDArray[Any], seen: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """Return an n x K float matrix, finite wherever `seen` (other entries are never read)."""
    array = np.asarray(values, dtype=np.float64)
    if array.shape != seen.shape:
        raise ValueError(f"{name} must have observed's shape {seen.shape}, got {array.shape}")
    if not np.all(np.isfinite(array[seen])):
        raise ValueError(f"{name} must be finite wherever observed")
    return array


def observation_propensity(values: NDArray[Any], seen: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Return chances of observation: in (0, 1] or NaN (unknown) wherever `seen`."""
    array = np.asarray(values, dtype=np.float64)
    if array.shape != seen.shape:
        raise ValueError(f"propensity must have observed's shape {seen.shape}, got {array.shape}")
    read = array[seen & ~np.isnan(array)]
    if np.any(read <= 0.0) or np.any(read > 1.0):
        raise ValueError("propensity must be in (0, 1] (or NaN, unknown) wherever observed")
    return array
