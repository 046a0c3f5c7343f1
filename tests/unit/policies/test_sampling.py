"""The reproducible draw: the documented SHA-256 rule, by hand, and its frequencies."""

from __future__ import annotations

import hashlib
import math

import pytest

from stopbandit.policies import sampling
from stopbandit.policies.sampling import draw_index, request_uniform

# SCHEMA.md's example policy.
SCHEMA_PMF = [0.0, 0.0, 0.02, 0.05, 0.88, 0.05, 0.0]


def uniform_by_hand(request_id: str) -> float:
    """The documented rule: first 8 bytes of SHA-256(request_id), big-endian, over 2**64."""
    return int.from_bytes(hashlib.sha256(request_id.encode("utf-8")).digest()[:8], "big") / 2**64


@pytest.mark.parametrize(
    ("request_id", "u"),
    [
        ("9f2c-77", 0.03270440165554905),
        ("b", 0.2427353910172533),
        ("req-1", 0.5794485793621024),
        ("req-2", 0.6507564023143245),
        ("a", 0.7913742705223816),
    ],
)
def test_uniform_is_the_documented_hash(request_id: str, u: float) -> None:
    """request_uniform matches the rule computed by hand, and the literal value."""
    assert request_uniform(request_id) == uniform_by_hand(request_id) == u


@pytest.mark.parametrize(
    ("request_id", "index"),
    [
        # pmf cumulative: 0.1, 0.3, 0.6, 1.0; the first arm whose cumulative exceeds u.
        ("9f2c-77", 0),  # u = 0.0327
        ("b", 1),  # u = 0.2427
        ("req-1", 2),  # u = 0.5794
        ("req-2", 3),  # u = 0.6508
        ("a", 3),  # u = 0.7914
    ],
)
def test_literal_index_for_a_fixed_pmf(request_id: str, index: int) -> None:
    """A node in any language that follows the rule draws the same arm."""
    assert draw_index([0.1, 0.2, 0.3, 0.4], request_id) == index


def test_schema_example_request_draws_the_fourth_arm() -> None:
    """u(9f2c-77) = 0.0327 lies in (0.02, 0.07]: arm 0.9 of SCHEMA.md's example policy."""
    assert draw_index(SCHEMA_PMF, "9f2c-77") == 3


def test_draw_is_reproducible() -> None:
    """The same request_id and pmf always give the same arm."""
    pmf = [0.2, 0.3, 0.5]
    first = [draw_index(pmf, f"r-{i}") for i in range(200)]
    assert [draw_index(pmf, f"r-{i}") for i in range(200)] == first
    assert len(set(first)) == 3


def test_zero_probability_arm_is_never_drawn() -> None:
    """Arms with probability 0, at the ends or between others, are never chosen."""
    drawn = {draw_index(SCHEMA_PMF, f"req-{i}") for i in range(20_000)}
    assert drawn == {2, 3, 4, 5}


def test_rounding_shortfall_falls_back_to_the_last_positive_arm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pmf summing to a hair under 1 and u above that sum: the last arm with mass, not a zero."""
    monkeypatch.setattr(sampling, "request_uniform", lambda _: 0.99999999)
    assert draw_index([0.3, 0.3, 0.3999999, 0.0], "any") == 2


@pytest.mark.parametrize("pmf", [[], [0.0, 0.0], [-0.5, 0.0], [math.nan]])
def test_pmf_without_mass_is_refused(pmf: list[float]) -> None:
    """No positive entry: nothing can be drawn, and no zero-probability index is returned."""
    with pytest.raises(ValueError, match="pmf"):
        draw_index(pmf, "req-1")


def test_uniform_is_in_the_unit_interval() -> None:
    """The uniform is in [0, 1) for any id."""
    assert all(0.0 <= request_uniform(f"id:{i}") < 1.0 for i in range(1000))


def within_four_sigma(counts: list[int], pmf: list[float]) -> bool:
    """Whether every count is within 4 binomial standard deviations of n*p."""
    n = sum(counts)
    return all(
        abs(count - n * p) <= 4 * math.sqrt(n * p * (1 - p))
        for count, p in zip(counts, pmf, strict=True)
    )


def test_frequencies_match_the_pmf_within_four_sigma() -> None:
    """Over 100k request ids each arm's count is within 4 binomial sigmas of n*p."""
    pmf = [0.05, 0.0, 0.15, 0.3, 0.5]
    counts = [0] * len(pmf)
    for i in range(100_000):
        counts[draw_index(pmf, f"req-{i:06d}")] += 1
    assert within_four_sigma(counts, pmf), counts
    assert counts[1] == 0
    # The check has power: nearby wrong pmfs fail it on the same counts.
    assert not within_four_sigma(counts, [0.05, 0.0, 0.15, 0.31, 0.49])
    assert not within_four_sigma(counts, [0.06, 0.0, 0.14, 0.3, 0.5])


def control_uniform_by_hand(request_id: str) -> float:
    """The documented control rule: the same hash over "stopbandit-control:" + request_id."""
    digest = hashlib.sha256(("stopbandit-control:" + request_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@pytest.mark.parametrize("request_id", ["9f2c-77", "b", "req-1", "a"])
def test_control_uniform_is_the_documented_hash_on_its_own_domain(request_id: str) -> None:
    """Membership uses its own prefix, so it is not the draw's number."""
    u = sampling.control_uniform(request_id)
    assert u == control_uniform_by_hand(request_id)
    assert u != request_uniform(request_id)


def test_control_group_has_its_fraction_and_is_independent_of_the_draw() -> None:
    """About `fraction` of ids are members, and members draw arms like everyone else."""
    ids = [f"req-{i}" for i in range(40_000)]
    members = [rid for rid in ids if sampling.in_control(rid, 0.1)]
    assert abs(len(members) / len(ids) - 0.1) < 4 * math.sqrt(0.1 * 0.9 / len(ids))
    pmf = [0.2, 0.3, 0.5]
    drawn = [draw_index(pmf, rid) for rid in members]
    for k, p in enumerate(pmf):
        share = drawn.count(k) / len(drawn)
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / len(drawn))
    assert not any(sampling.in_control(rid, 0.0) for rid in ids[:1000])


def test_serve_index_and_served_pmf() -> None:
    """Members get the control arm; the served pmf mixes its share in and sums to 1."""
    pmf = [0.0, 0.6, 0.4]
    member = next(f"m-{i}" for i in range(1000) if sampling.in_control(f"m-{i}", 0.2))
    outsider = next(f"o-{i}" for i in range(1000) if not sampling.in_control(f"o-{i}", 0.2))
    assert sampling.serve_index(pmf, member, (0, 0.2)) == 0
    assert sampling.serve_index(pmf, outsider, (0, 0.2)) == draw_index(pmf, outsider)
    assert sampling.serve_index(pmf, member, None) == draw_index(pmf, member)
    served = sampling.served_pmf(pmf, 0, 0.2)
    assert served == pytest.approx([0.2, 0.48, 0.32])
    assert sum(served) == pytest.approx(1.0)
