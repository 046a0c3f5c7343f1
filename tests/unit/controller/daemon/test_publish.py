"""The publisher: a round of policies from every core, versions floored, `*` built once."""

from __future__ import annotations

import json

import pytest
from daemon_fakes import SEGMENT, FakeProducer, Journal, config, interaction
from prometheus_client import generate_latest

from stopbandit.controller.core import ControllerCore
from stopbandit.controller.daemon.metrics import Metrics
from stopbandit.controller.daemon.publish import VERSIONS_PER_MS, Publisher, version_floor
from stopbandit.policies.signing import verify
from stopbandit.streams.codec import decode
from stopbandit.streams.kafka import Outbox

WALL_S = 1_764_489_600.0
KEY = "k" * 32


def learned_core(requests: int, arm: float = 1.0) -> ControllerCore:
    """A core that has learned `requests` interactions of one segment at `arm`."""
    core = ControllerCore(config())
    for i in range(requests):
        for key, value in interaction(i, arm=arm):
            core.offer(decode(key, value), now=float(i))
    return core


def publisher(**overrides: object) -> tuple[Publisher, FakeProducer]:
    """A publisher over a fake producer, and the producer to read what went out."""
    producer = FakeProducer(Journal())
    return Publisher(config(**overrides), Outbox(producer), Metrics()), producer


def test_versions_start_at_the_wall_clock_floor_and_increase_across_cores() -> None:
    """Every policy of a round is above the floor, strictly increasing from core to core."""
    pub, _ = publisher()
    cores = [(learned_core(5), False), (learned_core(5), False)]
    policies = pub.build(cores, WALL_S, with_fallback=True)
    versions = [p.version for p in policies]
    assert versions[0] == version_floor(WALL_S) + 1
    assert versions == sorted(set(versions))
    assert [p.segment for p in policies] == [SEGMENT, SEGMENT, "*"]
    assert pub.last_version == versions[-1]


def test_an_unchanged_round_issues_nothing_and_a_forced_core_issues_all_again() -> None:
    """Only changed policies go out, unless the core is marked force (e.g. after a failed flush)."""
    pub, _ = publisher()
    core = learned_core(5)
    assert pub.build([(core, False)], WALL_S, with_fallback=True)
    assert pub.build([(core, False)], WALL_S + 1, with_fallback=True) == []
    again = pub.build([(core, True)], WALL_S + 2, with_fallback=False, force_fallback=False)
    assert [p.segment for p in again] == [SEGMENT]
    forced_star = pub.build([(core, False)], WALL_S + 3, with_fallback=True, force_fallback=True)
    assert [p.segment for p in forced_star] == ["*"]


def test_the_fallback_is_built_only_by_the_owner_of_partition_0() -> None:
    """A replica without partition 0 never issues `*`."""
    pub, _ = publisher()
    policies = pub.build([(learned_core(5), False)], WALL_S, with_fallback=False)
    assert "*" not in {p.segment for p in policies}


def test_the_fallback_pools_every_cores_segments() -> None:
    """`*` reflects the estimates of the segments of all cores, not of the first one only."""
    pub_one, _ = publisher()
    pub_two, _ = publisher()
    one = pub_one.build([(learned_core(40, arm=1.0), False)], WALL_S, with_fallback=True)
    two = pub_two.build(
        [(learned_core(40, arm=1.0), False), (learned_core(400, arm=0.5), False)],
        WALL_S,
        with_fallback=True,
    )
    star_one = next(p for p in one if p.segment == "*")
    star_two = next(p for p in two if p.segment == "*")
    assert star_one.estimates is not None
    assert star_two.estimates is not None
    assert star_two.estimates.n[0] == pytest.approx(400.0, rel=0.01)
    assert star_one.estimates.n[0] == 0.0


def test_policies_are_signed_once_and_served_as_sent() -> None:
    """The bytes on the topic verify with the key, and /policies serves the same signed policy."""
    pub, producer = publisher(publish={"interval_s": 1.0, "hmac_key": KEY})
    policies = pub.build([(learned_core(5), False)], WALL_S, with_fallback=True)
    pub.send(policies)
    producer.flush()
    pub.delivered(policies, 0.01)
    assert len(producer.sent) == len(policies)
    for (_, key, value), policy in zip(producer.sent, policies, strict=True):
        assert value is not None
        document = json.loads(value)
        assert key == policy.segment.encode()
        assert verify(document, KEY.encode())
        assert pub.current[policy.segment].signature == document["signature"]


def test_versions_per_ms_leave_room_below_2_to_the_53() -> None:
    """The floor stays exact in a double (JSON readers) for centuries."""
    assert version_floor(WALL_S) % VERSIONS_PER_MS == 0
    assert version_floor(8_000_000_000.0) < 2**53


def _core_of_segments(segments: int, per_segment: int = 3, **overrides: object) -> ControllerCore:
    """A core that learned `per_segment` interactions in each of `segments` segments."""
    core = ControllerCore(config(**overrides))
    for s in range(segments):
        for i in range(per_segment):
            for key, value in interaction(i):
                event = decode(key, value)
                segment = f"seg{s:03d}"
                core.offer(
                    event.model_copy(update={"segment": segment, "request_id": f"{s}-{i}"}), 0.0
                )
    return core


def _deliver(pub: Publisher, cores: list[tuple[ControllerCore, bool]], wall_s: float) -> list:
    policies = pub.build(cores, wall_s, with_fallback=True)
    pub.send(policies)
    pub.delivered(policies, 0.0)
    return policies


def test_a_round_rebuilds_only_the_segments_that_learned() -> None:
    """Nothing learned: nothing built. One learned: it, `*` and the 3 built longest ago."""
    refresh = {"publish": {"interval_s": 1.0, "refresh_per_round": 3}}
    pub, _ = publisher(**refresh)
    core = _core_of_segments(20, **refresh)
    assert len(_deliver(pub, [(core, False)], WALL_S)) == 21
    assert pub.rebuilt == 21
    assert _deliver(pub, [(core, False)], WALL_S + 1) == []
    assert pub.rebuilt == 0
    for key, value in interaction(99, arm=0.5, em=0.0):
        event = decode(key, value)
        core.offer(event.model_copy(update={"segment": "seg007"}), 0.0)
    _deliver(pub, [(core, False)], WALL_S + 2)
    assert pub.rebuilt == 1 + 3 + 1  # seg007, seg000-seg002 (the stalest) and `*`
    assert _deliver(pub, [(core, False)], WALL_S + 2.5) == []  # nothing learned: nothing built
    _deliver(pub, [(core, True)], WALL_S + 3)
    assert pub.rebuilt == 21  # a forced round (anti-entropy, restore) rebuilds every one


def test_per_segment_gauges_name_only_the_busiest_segments() -> None:
    """top_segments by traffic and `*` by name, every other segment in `_other`."""
    pub, _ = publisher(control={"top_segments": 3})
    core = _core_of_segments(30)
    for i in range(5):  # seg029 becomes the busiest
        for key, value in interaction(100 + i):
            core.offer(decode(key, value).model_copy(update={"segment": "seg029"}), 0.0)
    _deliver(pub, [(core, False)], WALL_S)
    exposition = generate_latest(pub._metrics.registry).decode()
    for name in ("policy_greedy_threshold", "policy_version", "exploration_share", "drift_resets"):
        labels = {
            line.split('segment="')[1].split('"')[0]
            for line in exposition.splitlines()
            if line.startswith(f"stopbandit_{name}{{")
        }
        assert len(labels) == 3 + 2, (name, labels)  # three by name, `*`, `_other`
        assert {"seg029", "*", "_other"} <= labels
        named = labels - {"*", "_other"}
    sample = pub._metrics.registry.get_sample_value
    rest = [p for segment, p in pub.current.items() if segment not in named | {"*"}]
    assert len(rest) == 27
    assert sample("stopbandit_policy_version", {"segment": "_other"}) == max(
        p.version for p in rest
    )
    mean_greedy = sample("stopbandit_policy_greedy_threshold", {"segment": "_other"})
    assert min(p.greedy for p in rest) <= mean_greedy <= max(p.greedy for p in rest)


def test_an_evicted_segment_leaves_the_view_and_is_counted() -> None:
    """Past limits.max_segments: out of /policies and the book; the topic is never deleted from."""
    pub, producer = publisher(limits={"max_segments": 5})
    core = _core_of_segments(5, limits={"max_segments": 5})
    _deliver(pub, [(core, False)], WALL_S)
    producer.flush()
    assert "seg000" in pub.current
    for key, value in interaction(7):
        core.offer(decode(key, value).model_copy(update={"segment": "new"}), 0.0)
    assert "seg000" not in core.book.current
    _deliver(pub, [(core, False)], WALL_S + 1)
    producer.flush()
    assert "seg000" not in pub.current
    assert all(value is not None for _, _, value in producer.sent)
    assert pub._metrics.registry.get_sample_value("stopbandit_segments_evicted_total") == 1
    assert "seg000" not in core.snapshot()["policies"]


def test_one_budget_of_builds_per_round_over_every_core() -> None:
    """publish.max_builds_per_round bounds a round whatever the cores; the rest follow."""
    limits = {"publish": {"interval_s": 1.0, "max_builds_per_round": 15}}
    pub, _ = publisher(**limits)
    cores = [(_core_of_segments(10, **limits), False), (_core_of_segments(10, **limits), False)]
    assert len(_deliver(pub, cores, WALL_S)) == 15 + 1  # and `*`
    assert len(_deliver(pub, cores, WALL_S + 1)) >= 5
    assert all(len(core.book.current) == 10 for core, _ in cores)
