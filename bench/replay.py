"""Replay throughput: events/s on a 1M-event log, and the cost of each added sweep point.

Generates the log once into a temporary directory (500 000 seeded requests of the
shipped scenario, 1 000 000 events, gzip) with a fixed exploring policy per segment
(the simulator's request path, without a learner, so generation is quick), then
measures in one run:

1. replay without learning (decode, join) + evaluation of the logged policy and every
   fixed threshold (IPS, SNIPS, DR; overall and per segment): target >= 50 000 events/s;
2. replay with learning (progressive policy rebuilt every 1 000 interactions);
3. evaluation of a sweep of 1 and of 11 points on the trained core: the cost per point.

Run: `.venv/bin/python bench/replay.py [--interactions N]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from stopbandit.controller.config import load_config
from stopbandit.controller.replay.evaluate import evaluate
from stopbandit.controller.replay.feed import replay
from stopbandit.controller.replay.sources import file_events
from stopbandit.controller.replay.targets import (
    Sweep,
    fixed_targets,
    learned_target,
    logged_target,
    sweep_targets,
)
from stopbandit.controller.sim.scenario import DEFAULT_SCENARIO, load_scenario
from stopbandit.controller.sim.simulate import START_TS, Simulation
from stopbandit.streams.codec import decode
from stopbandit.streams.events import Decision, Outcome, Policy
from stopbandit.streams.files import event_log_writer

# An exploring policy around 0.9 for every segment (every arm has some probability).
PMF = [0.01, 0.04, 0.1, 0.6, 0.15, 0.07, 0.03]


class StaticAgent:
    """Serves one fixed policy everywhere; learns nothing."""

    def __init__(self, arms: list[float]) -> None:
        self.policy = Policy(
            segment="*", version=1, issued_at=START_TS, arms=arms, pmf=PMF, greedy=0.9
        )

    def policy_for(self, segment: str) -> Policy | None:  # noqa: ARG002 - one policy for all
        """The fixed policy."""
        return self.policy

    def observe(self, decision: Decision, outcome: Outcome, now: float) -> None:
        """Nothing to learn."""

    def publish(self, now: float) -> None:
        """Nothing to publish."""


def generate(path: Path, interactions: int) -> float:
    """Write the log; return the seconds it took."""
    started = time.perf_counter()
    scenario = load_scenario(DEFAULT_SCENARIO)
    config = load_config(None)
    with event_log_writer(path) as log:
        Simulation(
            scenario,
            StaticAgent(list(scenario.arms)),
            seed=1,
            weights=config.reward,
            fallback_arm=config.default_arm,
            log=log,
        ).run(interactions)
    return time.perf_counter() - started


def main() -> None:
    """Generate, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=500_000)
    args = parser.parse_args()
    config = load_config(None)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "events.jsonl.gz"
        generation_s = generate(path, args.interactions)
        events = 2 * args.interactions
        print(
            f"generated {events:,} events in {generation_s:.1f} s ({path.stat().st_size:,} bytes)"
        )

        started = time.perf_counter()
        for raw in file_events([path]):
            decode(raw.key, raw.value)
        decode_s = time.perf_counter() - started
        print(
            f"read+decode alone (streams.codec.decode, the ceiling): {events / decode_s:,.0f} "
            f"events/s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )

        started = time.perf_counter()
        plain = replay(file_events([path]), config, learn=False)
        joined_s = time.perf_counter() - started
        evaluate(plain, [logged_target(), *fixed_targets(plain)], config.reward)
        plain_s = time.perf_counter() - started
        print(
            f"without learning: read+decode+join {joined_s:.1f} s, with evaluation of logged + "
            f"{len(config.arms)} fixed {plain_s:.1f} s: {events / plain_s:,.0f} events/s "
            f"(join only {events / joined_s:,.0f} events/s) "
            f"(target >= 50,000)"
        )

        started = time.perf_counter()
        learned = replay(file_events([path]), config, learn=True)
        learn_s = time.perf_counter() - started
        evaluate(learned, [learned_target(learned)], config.reward)
        learned_s = time.perf_counter() - started
        print(
            f"with learning: replay {learn_s:.1f} s ({events / learn_s:,.0f} events/s), "
            f"+ evaluation of the learned policy {learned_s - learn_s:.1f} s"
        )

        costs = {}
        for points in (1, 11):
            sweep = Sweep.parse(f"token_cost_per_1k=0.005:0.05:{points}")
            started = time.perf_counter()
            evaluate(learned, sweep_targets(learned, sweep), config.reward)
            costs[points] = time.perf_counter() - started
        per_point = (costs[11] - costs[1]) / 10
        print(
            f"sweep: 1 point {costs[1]:.2f} s, 11 points {costs[11]:.2f} s: "
            f"{per_point:.2f} s per added point ({per_point / plain_s:.1%} of the plain replay)"
        )


if __name__ == "__main__":
    main()
