"""Savings arithmetic: groups recomputed from request_ids, differences checked by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stopbandit.controller.savings import (
    CONTROL,
    CONTROLLED,
    FLEET,
    OTHER_SEGMENTS,
    SavingsTally,
    SegmentTally,
    compare,
    compare_strata,
    group_of,
    savings,
    savings_of,
)
from stopbandit.controller.savings_tally import tally_restored, tally_snapshot
from stopbandit.policies.sampling import in_control
from stopbandit.streams.join import Interaction

FRACTION = 0.3


def _interaction(
    request_id: str, segment: str, threshold: float, em: float, tokens: int, *, version: int = 5
) -> Interaction:
    return Interaction(
        request_id=request_id,
        segment=segment,
        context={},
        threshold=threshold,
        probability=0.5,
        policy_version=version,
        em=em,
        tokens=tokens,
        decision_ts=0.0,
        outcome_ts=1.0,
    )


def _ids(count: int, *, control: bool, start: int = 0) -> list[str]:
    """Request ids in (or out of) the control group of FRACTION."""
    found: list[str] = []
    i = start
    while len(found) < count:
        rid = f"r-{i}"
        if in_control(rid, FRACTION) == control:
            found.append(rid)
        i += 1
    return found


def test_groups_come_from_the_request_id_version_and_arm() -> None:
    """Members at the control arm are control; others controlled; fallbacks and misses neither."""
    member, outsider = _ids(1, control=True)[0], _ids(1, control=False)[0]
    assert group_of(_interaction(member, "s", 1.0, 1, 10), FRACTION, 1.0) == CONTROL
    assert group_of(_interaction(outsider, "s", 1.0, 1, 10), FRACTION, 1.0) == CONTROLLED
    assert group_of(_interaction(member, "s", 1.0, 1, 10, version=0), FRACTION, 1.0) is None
    assert group_of(_interaction(member, "s", 0.9, 1, 10), FRACTION, 1.0) is None
    tally = SavingsTally(FRACTION, 1.0)
    tally.add(_interaction(member, "s", 0.9, 1, 10))
    tally.add(_interaction(member, "s", 1.0, 1, 10, version=0))
    assert tally.unmatched == {"control_not_served": 1, "fallback": 1}
    assert not tally.segments


def test_segment_difference_matches_hand_computation() -> None:
    """EM and token differences, their standard errors and the token reduction's delta method."""
    controlled = [(1, 100), (0, 200), (1, 300), (1, 400)]
    control = [(1, 500), (0, 700), (1, 600)]
    ids1, ids0 = _ids(4, control=False), _ids(3, control=True)
    rows = [_interaction(r, "s", 0.9, em, t) for r, (em, t) in zip(ids1, controlled, strict=True)]
    rows += [_interaction(r, "s", 1.0, em, t) for r, (em, t) in zip(ids0, control, strict=True)]
    result = savings_of(rows, FRACTION, 1.0)
    c = result.segments["s"]
    em1, em0 = np.array([e for e, _ in controlled]), np.array([e for e, _ in control])
    t1, t0 = np.array([t for _, t in controlled]), np.array([t for _, t in control])
    assert c.requests == {CONTROLLED: 4, CONTROL: 3}
    assert c.em_change_pts.estimate == pytest.approx(100 * (em1.mean() - em0.mean()))
    se_em = math.sqrt(em1.var(ddof=1) / 4 + em0.var(ddof=1) / 3)
    assert c.em_change_pts.se == pytest.approx(100 * se_em)
    assert c.tokens_change.estimate == pytest.approx(t1.mean() - t0.mean())
    se_t1, se_t0 = math.sqrt(t1.var(ddof=1) / 4), math.sqrt(t0.var(ddof=1) / 3)
    assert c.tokens_change.se == pytest.approx(math.hypot(se_t1, se_t0))
    ratio = t1.mean() / t0.mean()
    assert c.token_reduction.estimate == pytest.approx(1 - ratio)
    expected_se = math.sqrt(se_t1**2 + ratio**2 * se_t0**2) / t0.mean()
    assert c.token_reduction.se == pytest.approx(expected_se)
    low, high = c.em_change_pts.interval()
    assert low < c.em_change_pts.estimate < high


def test_too_few_in_a_group_gives_no_interval() -> None:
    """One control request: means are reported, differences are unknown (None in JSON)."""
    tally = SegmentTally()
    tally.controlled.add(1, 100)
    tally.controlled.add(0, 100)
    tally.control.add(1, 300)
    comparison = compare(tally)
    assert math.isnan(comparison.em_change_pts.estimate)
    assert comparison.to_json()["em_change_pts"]["estimate"] is None
    assert comparison.em[CONTROL] == 1.0


def test_fleet_is_stratified_by_segment() -> None:
    """Two segments with the same within-segment change but unequal control shares: no bias.

    A plain pooled difference would mix the segments' token levels (the control
    group holds more of the expensive segment); the stratified one gives the
    within-segment difference exactly.
    """
    cheap, costly = SegmentTally(), SegmentTally()
    for em, tokens in [(1, 90), (0, 110)] * 5:
        cheap.controlled.add(em, tokens)
    for em, tokens in [(1, 190), (0, 210)]:
        cheap.control.add(em, tokens)
    for em, tokens in [(1, 990), (0, 1010)] * 5:
        costly.controlled.add(em, tokens)
    for em, tokens in [(1, 1090), (0, 1110)] * 4:
        costly.control.add(em, tokens)
    fleet = compare_strata([cheap, costly])
    assert fleet.tokens_change.estimate == pytest.approx(-100.0)
    assert fleet.em_change_pts.estimate == pytest.approx(0.0)
    pooled = SegmentTally()
    pooled.merge(cheap)
    pooled.merge(costly)
    assert compare(pooled).tokens_change.estimate < -200  # what stratification avoids
    # The fleet's means are weighted like its difference: the difference is theirs.
    assert fleet.tokens[CONTROLLED] - fleet.tokens[CONTROL] == pytest.approx(-100.0)
    # Weights are each segment's share of all compared requests: 12 and 18 of 30.
    assert fleet.tokens[CONTROLLED] == pytest.approx((12 * 100 + 18 * 1000) / 30)


def test_top_segments_by_traffic_and_the_rest_pooled() -> None:
    """Only the busiest segments are named; the rest are one entry; the fleet counts them all."""
    tally = SavingsTally(FRACTION, 1.0)
    counter = 0
    for segment, count in (("a", 30), ("b", 20), ("c", 10), ("d", 5)):
        for control in (False, True):
            for rid in _ids(count, control=control, start=counter):
                tally.add(_interaction(rid, segment, 1.0 if control else 0.9, 1, 100))
            counter += 10_000
    report = savings(tally, top_segments=2)
    assert list(report.segments) == ["a", "b", OTHER_SEGMENTS]
    assert report.segments[OTHER_SEGMENTS].requests == {CONTROLLED: 15, CONTROL: 15}
    assert report.fleet.requests == {CONTROLLED: 65, CONTROL: 65}
    document = report.to_json()
    assert document["fleet"]["em_change_pts"]["estimate"] == 0.0
    assert FLEET not in document["segments"]


def test_segments_beyond_the_cap_are_pooled() -> None:
    """A flood of segments cannot grow the tally: past max_segments they go to the pool."""
    tally = SavingsTally(FRACTION, 1.0, max_segments=3)
    for i, rid in enumerate(_ids(10, control=False)):
        tally.add(_interaction(rid, f"s{i}", 0.9, 1, 10))
    assert len(tally.segments) == 3
    assert tally.other.controlled.n == 7


def test_merge_and_reference_em() -> None:
    """Merged tallies add up; the control group's EM is the reference estimate with its se."""
    first, second = SavingsTally(FRACTION, 1.0), SavingsTally(FRACTION, 1.0)
    for i, rid in enumerate(_ids(4, control=True)):
        (first if i % 2 else second).add(_interaction(rid, "s", 1.0, i % 2, 10))
    first.merge(second)
    mean, se, n = first.reference_em("s")
    assert (mean, n) == (0.5, 4)
    assert se == pytest.approx(math.sqrt(np.var([0, 1, 0, 1], ddof=1) / 4))
    assert math.isnan(first.reference_em("unknown")[0])


def test_snapshot_round_trip_and_what_it_refuses() -> None:
    """A tally survives its JSON form; another group, bad sums or junk give None."""
    tally = SavingsTally(FRACTION, 1.0)
    for control in (False, True):
        for rid in _ids(5, control=control):
            tally.add(_interaction(rid, "s", 1.0 if control else 0.9, 1, 100))
    tally.add(_interaction(_ids(1, control=True, start=500)[0], "s", 0.5, 1, 100))
    data = json.loads(json.dumps(tally_snapshot(tally)))
    restored = tally_restored(data, FRACTION, 1.0)
    assert restored is not None
    assert savings(restored).to_json() == savings(tally).to_json()
    assert tally_restored(data, 0.1, 1.0) is None
    assert tally_restored(data, FRACTION, 0.9) is None
    assert tally_restored(None, FRACTION, 1.0) is None
    assert tally_restored({"fraction": FRACTION}, FRACTION, 1.0) is None
    data["segments"]["s"][0][0] = -1
    assert tally_restored(data, FRACTION, 1.0) is None
    data["segments"]["s"][0] = [1, "nan", 0, 0, 0]
    assert tally_restored(data, FRACTION, 1.0) is None


def test_a_restored_tally_keeps_its_bound() -> None:
    """Segments past max_segments in a checkpoint are pooled, not tracked by name."""
    tally = SavingsTally(FRACTION, 1.0)
    for i, rid in enumerate(_ids(6, control=False)):
        tally.add(_interaction(rid, f"s{i}", 0.9, 1, 10))
    restored = tally_restored(tally_snapshot(tally), FRACTION, 1.0, max_segments=2)
    assert restored is not None
    assert len(restored.segments) == 2
    assert restored.other.controlled.n == 4
