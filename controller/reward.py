"""The reward the controller maximises, from raw EM and tokens.

reward = em_weight * EM - token_cost_per_1k * tokens / 1000

Events carry raw EM and tokens, never a reward, so that logs can be replayed
under other weights; this module is the one place the formula lives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, overload

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from controller.config import RewardConfig

TOKENS_PER_UNIT = 1000.0


@overload
def reward(em: float, tokens: float, weights: RewardConfig) -> float: ...
@overload
def reward(
    em: NDArray[np.float64], tokens: NDArray[np.float64], weights: RewardConfig
) -> NDArray[np.float64]: ...
def reward(
    em: float | NDArray[np.float64],
    tokens: float | NDArray[np.float64],
    weights: RewardConfig,
) -> float | NDArray[np.float64]:
    """Reward of one request (scalars) or of many (arrays of equal shape)."""
    return weights.em_weight * em - weights.token_cost_per_1k * tokens / TOKENS_PER_UNIT


def reward_cov(
    em_cov: NDArray[np.float64], tokens_cov: NDArray[np.float64], weights: RewardConfig
) -> NDArray[np.float64]:
    """Covariance of per-arm reward estimates from independent EM and token estimates."""
    token_weight = weights.token_cost_per_1k / TOKENS_PER_UNIT
    return np.asarray(
        weights.em_weight**2 * em_cov + token_weight**2 * tokens_cov, dtype=np.float64
    )
