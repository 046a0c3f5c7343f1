"""Serving-node costs, measured in one run: PolicyClient.choose latency, EventEmitter throughput.

    .venv/bin/python bench/client.py [--calls 200000] [--events 100000]

choose() is timed call by call (perf_counter_ns, whose own cost is included)
over distinct request ids; the emitter sends into an embedded Tansu broker on
loopback, and its throughput is events acknowledged per second from the first
emit to the end of flush().
"""

from __future__ import annotations

import argparse
import statistics
import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from stopbandit.policies.client import PolicyClient
from stopbandit.policies.emitter import EventEmitter
from stopbandit.streams.embedded import EmbeddedTansu
from stopbandit.streams.events import Decision, Outcome, Policy

ARMS = [0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0]


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-quantile of already sorted values (nearest rank)."""
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def bench_choose(calls: int) -> None:
    """Print p50/p99/mean of choose() for a held segment, the `*` fallback and no policy."""
    client = PolicyClient(fallback_threshold=1.0)
    pmf = [0.0, 0.0, 0.02, 0.05, 0.88, 0.05, 0.0]
    for segment in ("math/gsm8k/r1-distill-qwen-7b", "*"):
        client.apply(
            Policy(segment=segment, version=1, issued_at=0.0, arms=ARMS, pmf=pmf, greedy=0.95)
        )
    empty = PolicyClient(fallback_threshold=1.0)
    ids = [f"req-{i:09d}" for i in range(calls)]
    cases = [
        ("segment policy", client, "math/gsm8k/r1-distill-qwen-7b"),
        ("`*` fallback", client, "unknown/segment"),
        ("no policy", empty, "math/gsm8k/r1-distill-qwen-7b"),
    ]
    print(f"PolicyClient.choose, {calls:,} calls each (microseconds)")
    print(f"  {'case':<16} {'p50':>7} {'p99':>7} {'mean':>7}")
    clock = time.perf_counter_ns
    for name, holder, segment in cases:
        choose = holder.choose
        samples = []
        for request_id in ids:
            started = clock()
            choose(request_id, segment)
            samples.append((clock() - started) / 1000.0)
        samples.sort()
        print(
            f"  {name:<16} {percentile(samples, 0.5):7.2f} {percentile(samples, 0.99):7.2f} "
            f"{statistics.fmean(samples):7.2f}"
        )


def bench_emitter(events: int) -> None:
    """Print events/s through EventEmitter into an embedded Tansu, and the caller's cost."""
    pairs = events // 2
    segment = "math/gsm8k/r1-distill-qwen-7b"
    batch: list[Decision | Outcome] = []
    for i in range(pairs):
        request_id = f"req-{i:09d}"
        batch.append(
            Decision(
                v=1, request_id=request_id, ts=1.0, segment=segment,
                context={"task": "gsm8k", "model": "r1-distill-qwen-7b"},
                threshold=0.95, probability=0.88, policy_version=1,
                pmf=list(zip(ARMS, [0.0, 0.0, 0.02, 0.05, 0.88, 0.05, 0.0], strict=True)),
            )
        )  # fmt: skip
        batch.append(
            Outcome(v=1, request_id=request_id, ts=2.0, segment=segment, em=1.0, tokens=917)
        )
    with EmbeddedTansu() as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        admin.create_topics([NewTopic("bench.events", 6, 1)], wait_for_metadata=True)
        admin.close()
        with EventEmitter(broker.bootstrap_servers, "bench.events") as emitter:
            emitter.emit(batch[0])  # connect and fetch metadata outside the timing
            emitter.flush()
            started = time.perf_counter()
            for event in batch[1:]:
                emitter.emit(event)
            emit_s = time.perf_counter() - started
            delivered = emitter.flush(timeout_s=300.0)
            total_s = time.perf_counter() - started
            stats = emitter.stats
    sent = len(batch) - 1
    print(f"EventEmitter into embedded Tansu, {sent:,} events (one producer, 6 partitions)")
    print(f"  throughput         {sent / total_s:10,.0f} events/s (emit to flush done)")
    print(f"  emit() caller cost {1e6 * emit_s / sent:10.2f} us/event")
    print(
        f"  delivered={delivered} sent={stats.sent:,} dropped={stats.dropped} failed={stats.failed}"
    )


def main() -> None:
    """Run both benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    bench_choose(args.calls)
    bench_emitter(args.events)


if __name__ == "__main__":
    main()
