"""A CI-sized flood of distinct segments: memory, publish and /metrics stay bounded.

100,000 segments of one interaction each through one partition's core and
the daemon's publisher, in a subprocess of its own so its peak RSS is its
own (`resource.getrusage`). bench/segments_flood.py runs the 1M version and
prints the times; here only counts and sizes are asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SEGMENTS = 100_000

_FLOOD = textwrap.dedent(
    """
    import json, resource, sys
    from kafka.future import Future
    from prometheus_client import generate_latest
    from stopbandit.controller.config import load_config
    from stopbandit.controller.core import ControllerCore
    from stopbandit.controller.daemon.metrics import Metrics
    from stopbandit.controller.daemon.publish import Publisher
    from stopbandit.streams.join import Interaction
    from stopbandit.streams.kafka import Outbox

    class Producer:
        def send(self, topic, key=None, value=None):
            future = Future()
            future.success(None)
            return future

        def flush(self, timeout=None):
            pass

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    segments = int(sys.argv[1])
    config = load_config(None)
    core = ControllerCore(config)
    metrics = Metrics()
    outbox = Outbox(Producer())
    publisher = Publisher(config, outbox, metrics)
    wall_s = 1_764_489_600.0

    def publish(force=False):
        global wall_s
        wall_s += 5.0
        policies = publisher.build([(core, force)], wall_s, with_fallback=True)
        publisher.send(policies)
        outbox.flush(10.0)
        publisher.delivered(policies, 0.0)
        return publisher.rebuilt

    arms = config.arms
    started_mb = peak_mb()
    flood_built = []
    for i in range(segments):
        arm = arms[i % len(arms)]
        core.learn(Interaction(f"r{i}", f"flood/{i}", {"task": "t"}, arm, 1.0, 0, 1.0, 500, 0, 0))
        if (i + 1) % (segments // 2) == 0:
            flood_built.append(publish())
    # A flood leaves a backlog past publish.max_builds_per_round: worked off a round at a time.
    backlog_rounds = 0
    while publish() and backlog_rounds < 20:
        backlog_rounds += 1
    unchanged_built = publish()
    again = core.segments[0]
    core.learn(Interaction("again", again, {"task": "t"}, arms[0], 1.0, 0, 0.0, 90, 0, 0))
    changed_built = publish()
    print(json.dumps({
        "limit": config.limits.max_segments,
        "refresh": config.publish.refresh_per_round,
        "max_builds": config.publish.max_builds_per_round,
        "backlog_rounds": backlog_rounds,
        "held": len(core.segments),
        "policies": len(publisher.current),
        "checkpoint_segments": len(core.snapshot()["learner"]["stats"]),
        "checkpoint_policies": len(core.snapshot()["policies"]),
        "evicted": metrics.registry.get_sample_value("stopbandit_segments_evicted_total"),
        "flood_built": flood_built,
        "unchanged_built": unchanged_built,
        "changed_built": changed_built,
        "metrics_bytes": len(generate_latest(metrics.registry)),
        "started_mb": started_mb,
        "peak_mb": peak_mb(),
    }))
    """
)


@pytest.fixture(scope="module")
def flood() -> dict[str, object]:
    """The figures of one flood, run once for the module's tests."""
    out = subprocess.run(
        [sys.executable, "-c", _FLOOD, str(SEGMENTS)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    figures: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return figures


@pytest.mark.slow
def test_a_flood_holds_max_segments_and_evicts_the_rest(flood: dict[str, object]) -> None:
    """Held, published and checkpointed: max_segments each; every other one evicted, counted."""
    limit = flood["limit"]
    assert flood["held"] == flood["checkpoint_segments"] == limit
    assert flood["checkpoint_policies"] == limit
    assert flood["policies"] == limit + 1  # and `*`
    assert flood["evicted"] == SEGMENTS - limit


@pytest.mark.slow
def test_a_flood_stays_within_its_memory_bound(flood: dict[str, object]) -> None:
    """Peak RSS grows by at most 250 MB for 100k segments (one partition at the default limit).

    Measured: 95 MB over the interpreter's start (~20 KB per held segment);
    without the limit all 100k would stay, ~2 GB at that cost.
    """
    growth_mb = float(flood["peak_mb"]) - float(flood["started_mb"])  # type: ignore[arg-type]
    assert growth_mb < 250.0


@pytest.mark.slow
def test_an_unchanged_fleet_builds_nothing_and_a_change_builds_only_it(
    flood: dict[str, object],
) -> None:
    """After the flood: nothing learned, 0 built; one learned: it, `*` and refresh_per_round."""
    assert flood["unchanged_built"] == 0
    assert flood["changed_built"] == 2 + int(flood["refresh"])  # type: ignore[call-overload]
    limit = int(flood["limit"])  # type: ignore[call-overload]
    max_builds = int(flood["max_builds"])  # type: ignore[call-overload]
    assert all(built <= max_builds + 1 for built in flood["flood_built"])  # type: ignore[attr-defined]
    assert int(flood["backlog_rounds"]) <= limit // max_builds  # type: ignore[call-overload]


@pytest.mark.slow
def test_metrics_stay_small_under_a_flood(flood: dict[str, object]) -> None:
    """Per-segment labels only for the top segments: /metrics < 64 KB (20k segments: 2.6 MB)."""
    assert int(flood["metrics_bytes"]) < 64 * 1024  # type: ignore[call-overload]
