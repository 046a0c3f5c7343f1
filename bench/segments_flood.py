"""A flood of distinct segments through one partition's core and the publisher, in one run.

One producer can invent a new segment per request: issue 14 measured 200,000
of them in a checkpoint taking 2.5 GB and 226 s to the first publish after a
restart. This run floods one `ControllerCore` (one partition, its config's
`limits.max_segments`) with `--segments` distinct segments of one interaction
each, publishing through the daemon's `Publisher` (a producer that accepts
everything) every `--publish-every` interactions, as the daemon does every
`publish.interval_s`. It then prints, measured in this run:

- RSS (current and peak) after the flood, and the segments held;
- the publish of the flooded fleet (every held segment new; at most
  `publish.max_builds_per_round` a round, the backlog worked off in the
  rounds after), of an unchanged fleet (nothing learned since: policies
  built should be 0), of a changed one
  (1 % of the held segments learn again) and of a forced round (anti-entropy);
- /metrics and the default /policies page in bytes;
- the checkpoint: size, write (snapshot + encode) and restore (decode +
  restore) times;
- a restart from a checkpoint written with 200,000 segments (`--big`) under the
  default limit, as the daemon restores it (`Checkpoint.decode` with
  `max_segments`, then `ControllerCore.restore`): restore time, first publish
  and peak RSS, each in a subprocess of its own, for the checkpoint as
  `Checkpoint.encode` writes it and in the two layouts of older writers (the
  learner's order after its statistics; no order, from before the limit).
  Every 40th segment learns again last, so the order keeps others than the
  last ones first seen.

    .venv/bin/python bench/segments_flood.py            # 1,000,000 segments (~2.5 min)
    .venv/bin/python bench/segments_flood.py --quick    # 100,000 segments, 50,000 big
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from kafka.future import Future
from prometheus_client import generate_latest

from stopbandit.controller.config import load_config
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.daemon.checkpoint_format import Checkpoint
from stopbandit.controller.daemon.http import respond
from stopbandit.controller.daemon.metrics import Metrics
from stopbandit.controller.daemon.publish import Publisher
from stopbandit.streams.join import Interaction
from stopbandit.streams.kafka import Outbox

if TYPE_CHECKING:
    from stopbandit.streams.events import Policy

WALL_S = 1_764_489_600.0
TOPIC = "stopbandit.events"


class _Producer:
    """Accepts every message (the broker is not what is measured)."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None) -> Future:  # noqa: ARG002
        """Count the message; its future has succeeded."""
        self.sent += 1
        future = Future()
        future.success(None)
        return future

    def flush(self, timeout: float | None = None) -> None:
        pass


class _View:
    """What the HTTP routes read, from the publisher."""

    def __init__(self, metrics: Metrics, publisher: Publisher) -> None:
        self.metrics = metrics
        self.healthy = True
        self.ready = True
        self._publisher = publisher

    def policies(self) -> dict[str, Policy]:
        return dict(self._publisher.current)

    def savings(self) -> dict[str, object]:
        return {}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    # VmHWM is this process's own: ru_maxrss also counts the parent's peak at the fork + exec
    # of a `--restart` subprocess (the parent having just written the big checkpoint).
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _interaction(i: int, segment: str, rng: np.random.Generator) -> Interaction:
    arm = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)[int(rng.integers(7))]
    em = float(rng.random() < 0.4 + 0.5 * arm)
    context: dict[str, str | float] = {"task": f"t{i % 10}", "model": f"m{i % 3}"}
    return Interaction(f"r{i}", segment, context, arm, 1 / 7, 0, em, int(300 + 3000 * arm), 0, 0)


class Flood:
    """One core and its publisher, and the clock of their rounds."""

    def __init__(self, max_segments: int | None = None) -> None:
        limits = {} if max_segments is None else {"limits": {"max_segments": max_segments}}
        self.config = load_config(None, **limits)
        self.core = ControllerCore(self.config)
        self.metrics = Metrics()
        self.outbox = Outbox(_Producer())
        self.publisher = Publisher(self.config, self.outbox, self.metrics)
        self.rng = np.random.default_rng(1)
        self.wall_s = WALL_S
        self.learned = 0

    def learn(self, segment: str) -> None:
        """One interaction of `segment` (new or not)."""
        self.core.learn(_interaction(self.learned, segment, self.rng))
        self.learned += 1

    def publish(self, *, force: bool = False) -> tuple[float, int, int]:
        """One delivered round: (seconds, policies built, policies issued)."""
        self.wall_s += 5.0
        started = time.perf_counter()
        policies = self.publisher.build(
            [(self.core, force)], self.wall_s, with_fallback=True, force_fallback=force
        )
        self.publisher.send(policies)
        self.outbox.flush(10.0)
        self.publisher.delivered(policies, 0.0)
        return time.perf_counter() - started, self.publisher.rebuilt, len(policies)


def _restart(path: str) -> None:
    """Subprocess: restore the checkpoint at `path` under the default limit; print the figures."""
    blob = Path(path).read_bytes()
    flood = Flood()
    started = time.perf_counter()
    # As the daemon's restore reads it (restoring.py: the store's load with the limit).
    limit = flood.config.limits.max_segments
    checkpoint = Checkpoint.decode(TOPIC, 0, blob, max_segments=limit)
    flood.core.restore(checkpoint.state)
    restore_s = time.perf_counter() - started
    publish_s, built, _ = flood.publish(force=True)
    print(f"{restore_s} {publish_s} {built} {len(flood.core.segments)} {_peak_mb()}")


# The layouts of a checkpoint's learner, as each writer wrote it.
LAYOUTS = {
    "now": "as encode writes it",
    "order last": "order after the statistics",
    "no order": "no order, from before the limit",
}


def _big_checkpoints(segments: int, directory: Path) -> tuple[dict[str, Path], float]:
    """A checkpoint holding `segments` segments (written without a limit, as before one).

    In each of `LAYOUTS`; its size as `encode` writes it, in MB.
    """
    flood = Flood(max_segments=segments)
    for i in range(segments):
        flood.learn(f"big{i}")
    for i in range(0, segments, 40):
        flood.learn(f"big{i}")
    state = flood.core.snapshot()
    blob = Checkpoint(TOPIC, 0, flood.learned, WALL_S, state, WALL_S).encode()
    # The snapshot's own order (`recency` last) is the older writers'; before it, no order.
    without = {k: v for k, v in state["learner"].items() if k != "recency"}
    documents = {"order last": state, "no order": {**state, "learner": without}}
    paths = {"now": directory / "now.ckpt"}
    paths["now"].write_bytes(blob)
    for layout, older in documents.items():
        document = {
            "format": 1,
            "topic": TOPIC,
            "partition": 0,
            "offset": flood.learned,
            "written_at": WALL_S,
            "watermark_s": WALL_S,
            "state": older,
        }
        paths[layout] = directory / f"{layout.replace(' ', '-')}.ckpt"
        raw = json.dumps(document, separators=(",", ":")).encode()
        paths[layout].write_bytes(gzip.compress(raw, compresslevel=6))
    return paths, len(blob) / 1e6


def main() -> None:
    """Run the flood and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=1_000_000)
    parser.add_argument("--publish-every", type=int, default=200_000)
    parser.add_argument("--big", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="100,000 segments, 50,000 big")
    parser.add_argument("--restart", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.restart:
        _restart(args.restart)
        return
    if args.quick:
        args.segments, args.publish_every, args.big = 100_000, 25_000, 50_000
    baseline_mb = _rss_mb()
    flood = Flood()
    limit = flood.config.limits.max_segments
    rows: list[tuple[str, str]] = []
    started = time.perf_counter()
    flood_rounds = []
    for i in range(args.segments):
        flood.learn(f"flood/{i}")
        if (i + 1) % args.publish_every == 0:
            flood_rounds.append(flood.publish())
    flood_s = time.perf_counter() - started
    rows += [
        (
            "segments sent / held (limits.max_segments)",
            f"{args.segments:,} / {len(flood.core.segments):,} ({limit:,})",
        ),
        ("segments evicted", f"{flood.core.learner.evictions:,}"),
        ("flood time (learn + publishes)", f"{flood_s:.1f} s"),
        (
            "RSS before / after the flood / peak",
            f"{baseline_mb:.0f} / {_rss_mb():.0f} / {_peak_mb():.0f} MB",
        ),
        ("RSS per held segment", f"{(_rss_mb() - baseline_mb) * 1024 / limit:.1f} KB"),
    ]
    worst = max(flood_rounds)
    rows.append(
        (
            "publish during the flood (worst round)",
            f"{worst[0]:.2f} s, {worst[1]:,} built, {worst[2]:,} issued",
        )
    )
    # The flood leaves changed segments past publish.max_builds_per_round: the next rounds.
    drain = [flood.publish()]
    while drain[-1][1] > 0 and len(drain) < 50:
        drain.append(flood.publish())
    rows.append(
        (
            "flood backlog worked off",
            f"{len(drain) - 1} rounds, the longest {max(r[0] for r in drain):.2f} s",
        )
    )
    for label, round_ in (
        ("publish, unchanged fleet", flood.publish()),
        ("publish, 1 % of held segments learned", _changed(flood, limit // 100)),
        ("publish, forced (anti-entropy)", flood.publish(force=True)),
    ):
        rows.append((label, f"{round_[0] * 1e3:.1f} ms, {round_[1]:,} built, {round_[2]:,} issued"))
    rows.append(("RSS with every held segment's policy built", f"{_rss_mb():.0f} MB"))
    view = _View(flood.metrics, flood.publisher)
    rows.append(("/metrics", f"{len(generate_latest(flood.metrics.registry)) / 1024:.1f} KB"))
    rows.append(
        ("/policies (default page)", f"{len(respond(view, 'GET', '/policies')[2]) / 1024:.0f} KB")
    )
    started = time.perf_counter()
    blob = Checkpoint(TOPIC, 0, flood.learned, WALL_S, flood.core.snapshot(), WALL_S).encode()
    write_s = time.perf_counter() - started
    started = time.perf_counter()
    restored = ControllerCore(flood.config)
    restored.restore(Checkpoint.decode(TOPIC, 0, blob).state)
    read_s = time.perf_counter() - started
    rows.append(
        (
            "checkpoint size / write / restore",
            f"{len(blob) / 1e6:.1f} MB / {write_s:.2f} s / {read_s:.2f} s",
        )
    )
    with tempfile.TemporaryDirectory() as directory:
        paths, big_mb = _big_checkpoints(args.big, Path(directory))
        for layout, path in paths.items():
            out = subprocess.run(
                [sys.executable, __file__, "--restart", str(path)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()
            restore_s, publish_s, built, held, peak = (float(v) for v in out[-5:])
            rows.append(
                (
                    f"restart from {args.big:,} segments ({big_mb:.1f} MB), {LAYOUTS[layout]}",
                    (
                        f"restore {restore_s:.1f} s, first publish {publish_s:.1f} s "
                        f"({built:,.0f} built), {held:,.0f} held, peak RSS {peak:.0f} MB"
                    ),
                )
            )
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


def _changed(flood: Flood, count: int) -> tuple[float, int, int]:
    for segment in flood.core.segments[:count]:
        flood.learn(segment)
    return flood.publish()


if __name__ == "__main__":
    main()
