"""Temporary: moved to policies/reward.py; removed once every import points there."""

from policies.reward import TOKENS_PER_UNIT, reward, reward_cov

__all__ = ["TOKENS_PER_UNIT", "reward", "reward_cov"]
