"""The reward the controller maximises, from raw EM and tokens.

reward = em_weight * EM - token_cost_per_1k * tokens / 1000

Events carry raw EM and tokens, never a reward, so that logs can be replayed
under other weights; this module is the one place the formula lives. It sits
with the policy builder because building a policy is where it is applied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, overload

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

TOKENS_PER_UNIT = 1000.0


class Weights(Protocol):
    """Reward weights: the config's `reward` section, or a policy's echo of it."""

    @property
    def em_weight(self) -> float:
        """What one exact match is worth."""
        ...

    @property
    def token_cost_per_1k(self) -> float:
        """What 1,000 generated tokens cost, in the same unit."""
        ...


@overload
def reward(em: float, tokens: float, weights: Weights) -> float: ...
@overload
def reward(
    em: NDArray[np.float64], tokens: NDArray[np.float64], weights: Weights
) -> NDArray[np.float64]: ...
def reward(
    em: float | NDArray[np.float64],
    tokens: float | NDArray[np.float64],
    weights: Weights,
) -> float | NDArray[np.float64]:
    """Reward of one request (scalars) or of many (arrays of equal shape)."""
    return weights.em_weight * em - weights.token_cost_per_1k * tokens / TOKENS_PER_UNIT


def reward_cov(
    em_cov: NDArray[np.float64], tokens_cov: NDArray[np.float64], weights: Weights
) -> NDArray[np.float64]:
    """Covariance of per-arm reward estimates from independent EM and token estimates."""
    token_weight = weights.token_cost_per_1k / TOKENS_PER_UNIT
    return np.asarray(
        weights.em_weight**2 * em_cov + token_weight**2 * tokens_cov, dtype=np.float64
    )
