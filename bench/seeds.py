"""The benches' `--seeds` argument: '1,2,3', '4-11', a mix of both, or empty."""

from __future__ import annotations


def seed_list(text: str) -> list[int]:
    """'1,2,3' or '4-11' (or a mix, or empty) as a list of seeds."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, _, high = part.partition("-")
        seeds += range(int(low), int(high or low) + 1)
    return seeds
