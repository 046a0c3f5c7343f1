"""Totals and the tally: what target mode measures, and how partitions' sums add."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stopbandit.controller.targets import Tally, Totals


def test_achieved_values() -> None:
    """Token reduction and EM drop, in points; None where they are undefined."""
    totals = Totals(n=10, tokens=700, em=8, reference_tokens=1000, reference_em=9)
    assert totals.achieved("token_reduction") == pytest.approx(30.0)
    assert totals.achieved("em_drop_pts") == pytest.approx(10.0)
    assert Totals().achieved("token_reduction") is None
    assert Totals(n=1).achieved("token_reduction") is None


def test_tally_settles_at_the_reference_estimates() -> None:
    """Pending requests are priced at their segment's reference (EM, tokens); others wait."""
    tally = Tally()
    tally.add("a", 1.0, 100)
    tally.add("a", 0.0, 300)
    tally.add("b", 1.0, 50)
    totals = tally.settle({"a": (0.5, 400.0)})
    assert totals == Totals(n=2, tokens=400, em=1, reference_tokens=800, reference_em=1.0)
    assert tally.pending == {"b": [1.0, 50.0, 1.0]}
    totals = tally.settle({"a": (0.5, 400.0), "b": (1.0, 100.0)})
    assert totals.n == 3
    assert totals.reference_tokens == 900


def test_tally_snapshot_round_trip() -> None:
    """A restored tally holds the same totals and pending requests."""
    tally = Tally()
    tally.add("a", 1.0, 100)
    tally.settle({"a": (1.0, 200.0)})
    tally.add("b", 0.0, 10)
    restored = Tally()
    restored.restore(tally.snapshot())
    assert restored == tally


@pytest.mark.parametrize(
    "state",
    [
        {"totals": {"n": 1}},
        {"totals": {"n": "x", "tokens": 0, "em": 0, "reference_tokens": 0, "reference_em": 0}},
        {"totals": Totals().to_dict(), "pending": {"a": [1, 2]}},
    ],
)
def test_tally_restore_rejects_malformed(state: dict[str, object]) -> None:
    """A damaged tally is refused with ValueError naming the part."""
    with pytest.raises(ValueError, match="target"):
        Tally().restore(state)


sums = st.builds(Totals, *(st.floats(0, 1e9, allow_nan=False) for _ in range(5)))


@given(a=sums, b=sums)
def test_partitions_add(a: Totals, b: Totals) -> None:
    """Sums from two partitions add field by field, and difference undoes the sum."""
    both = a + b
    assert both.n == pytest.approx(a.n + b.n)
    for x, y in zip((both - b).values(), a.values(), strict=True):
        assert x == pytest.approx(y, rel=1e-9, abs=1e-3)
