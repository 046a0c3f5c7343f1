"""Throughput of the in-process simulate path, and where its time goes.

Runs the shipped mixed-reasoning scenario twice in one process: once plain
(interactions/s, and its ratio to issue 2's 20k/s target), once under
cProfile, then prints the share of time per part of the path (grouped by
module) and the top functions. One core: the simulator is single-threaded.

    .venv/bin/python bench/simulate_profile.py [--interactions 100000]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections import defaultdict

from controller.commands.simulate import simulation_config
from controller.core import ControllerCore
from controller.sim.scenario import DEFAULT_SCENARIO, load_scenario
from controller.sim.simulate import ControllerAgent, Simulation

TARGET_PER_S = 20_000
PARTS = (
    ("wire models (pydantic)", ("pydantic", "streams/events")),
    ("VW regressions", ("learners/vw", "vowpal_wabbit")),
    ("arm statistics", ("learners/arm_stats",)),
    ("join", ("streams/join",)),
    # Before the policy build's "policies/", which would take policies/sampling.py too.
    ("threshold draw", ("policies/sampling", "hashlib")),
    (
        "policy build (estimates, exploration)",
        ("learners/outcome", "learners/pooling", "learners/smoothing", "policies/", "numpy"),
    ),
    ("simulator itself", ("controller/sim/",)),
)


def _run(interactions: int) -> float:
    scenario = load_scenario(DEFAULT_SCENARIO)
    config = simulation_config(scenario, None)
    simulation = Simulation(
        scenario,
        ControllerAgent(ControllerCore(config)),
        seed=1,
        weights=config.reward,
        fallback_arm=config.default_arm,
    )
    started = time.perf_counter()
    simulation.run(interactions)
    return interactions / (time.perf_counter() - started)


def main() -> None:
    """Measure, profile, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=100_000)
    args = parser.parse_args()

    per_s = _run(args.interactions)
    print(
        f"simulate path: {per_s:,.0f} interactions/s on one core "
        f"({per_s / TARGET_PER_S:.2f}x the {TARGET_PER_S:,}/s target)"
    )

    profiler = cProfile.Profile()
    profiler.enable()
    _run(args.interactions // 2)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    shares: dict[str, float] = defaultdict(float)
    for (filename, _, _), row in stats.stats.items():  # type: ignore[attr-defined]
        name = filename.replace("\\", "/")
        part = next((label for label, keys in PARTS if any(k in name for k in keys)), "other")
        shares[part] += row[2]  # own time, so nothing is counted twice
    print("\nshare of own time, by part of the path (under cProfile):")
    for part, seconds in sorted(shares.items(), key=lambda item: -item[1]):
        print(f"  {part:40} {seconds / total:6.1%}")
    print("\ntop functions by own time:")
    stats.sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
