"""Throughput of the in-process simulate path against raw VW learning, and where its time goes.

In one process, on one core (the simulator is single-threaded), it measures

- the simulate path on the shipped mixed-reasoning scenario, without traces
  (one outcome per request) and with counterfactuals (trace share 1,
  coupling 0.8), in interactions/s, and its ratio to issue 2's 20k/s;
- a raw vowpal-wabbit-next loop, `learn_one` on lines of the learner's
  own kind (`label weight |s seg=... task=... model=... |a a3`, parsed
  with `TextFormatParser` per line as controller/learners/vw.py does, the
  learner's VW arguments, EM and log-token labels on two workspaces), in
  learns/s;
- the ratio simulate / raw for each (issue 11's target: >= 0.25), and VW
  learns per interaction in each run (counted under the profiler);

then, under cProfile, the share of own time per part of the path (grouped by
module) and the top functions, for each of the two simulate runs.

    .venv/bin/python bench/simulate_profile.py [--interactions 100000]
    .venv/bin/python bench/simulate_profile.py --quick     # 20k interactions, 40k raw learns
    .venv/bin/python bench/simulate_profile.py --quick --cpu-time   # on a loaded machine
"""

from __future__ import annotations

import argparse
import cProfile
import math
import pstats
import time
from collections import defaultdict
from typing import Any

import numpy as np
import vowpal_wabbit_next as vw

from stopbandit.controller.commands.simulate import simulation_config
from stopbandit.controller.config import LearnerConfig
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.learners.outcome import shared_features
from stopbandit.controller.sim.scenario import DEFAULT_SCENARIO, Scenario, Truth, load_scenario
from stopbandit.controller.sim.simulate import ControllerAgent, Simulation

TARGET_PER_S = 20_000
# Simulate interactions/s over raw VW learns/s the path should reach (issue 11).
RATIO_TARGET = 0.25
TRACE_SHARE = 1.0
COUPLING = 0.8
RAW_LEARNS = 100_000
# Matched in order against "file:function", so built-ins such as pydantic_core's validator or
# VW's _core.learn_one (file "~") find their part by name.
PARTS = (
    ("wire models (pydantic)", ("pydantic", "streams/events")),
    ("VW regressions", ("learners/vw", "vowpal_wabbit")),
    ("arm statistics", ("learners/arm_stats", "learners/paired", "learners/observations")),
    ("join", ("streams/join",)),
    (
        "core: offer, dedup, learn dispatch",
        ("controller/core", "streams/dedup", "controller/config", "streams/arms"),
    ),
    # Before the policy build's "policies/", which would take policies/sampling.py too.
    ("threshold draw", ("policies/sampling", "hashlib")),
    (
        "policy build (estimates, exploration)",
        ("learners/outcome", "learners/pooling", "learners/smoothing", "policies/", "numpy"),
    ),
    ("simulator itself", ("controller/sim/",)),
)


# Wall time by default; --cpu-time reads this process's CPU time, which other work on a
# shared machine disturbs far less (the path is single-threaded, so both mean the same).
_CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = _CLOCKS["wall"]


def _scenario(traced: bool) -> Scenario:
    scenario = load_scenario(DEFAULT_SCENARIO)
    return scenario.with_trace(TRACE_SHARE, COUPLING) if traced else scenario


def _run(interactions: int, traced: bool) -> float:
    """One simulate run; its interactions/s."""
    scenario = _scenario(traced)
    config = simulation_config(scenario, None)
    simulation = Simulation(
        scenario,
        ControllerAgent(ControllerCore(config)),
        seed=1,
        weights=config.reward,
        fallback_arm=config.default_arm,
    )
    started = _clock()
    simulation.run(interactions)
    return interactions / (_clock() - started)


def _raw_lines(count: int) -> tuple[list[str], list[str]]:
    """EM and token lines like the learner's: the scenario's segments, arms, labels, weights."""
    truth = Truth(load_scenario(DEFAULT_SCENARIO))
    rng = np.random.default_rng(1)
    shared = [shared_features(k, f) for k, f in zip(truth.keys, truth.features, strict=True)]
    segments = rng.choice(len(truth.keys), size=count, p=truth.share)
    arms = rng.integers(0, len(truth.arms), size=count)
    # Importance weights as the learner's: mostly near 1, some explored arms up to the cap.
    weights = np.minimum(1.0 / rng.choice([0.9, 0.5, 0.1, 0.05], size=count), 50.0)
    em_lines, token_lines = [], []
    for s, k, w in zip(segments.tolist(), arms.tolist(), weights.tolist(), strict=True):
        em = 1.0 if rng.random() < truth.em[s, k] else 0.0
        tokens = int(truth.tokens[s, k] * rng.lognormal(-0.125, 0.5))
        em_lines.append(f"{em!r} {w!r} {shared[s]} |a a{k}")
        token_lines.append(f"{math.log1p(tokens)!r} {w!r} {shared[s]} |a a{k}")
    return em_lines, token_lines


def _raw_learns_per_s(count: int) -> float:
    """`learn_one` on parsed lines, alternating the EM and token workspaces; learns/s."""
    config = LearnerConfig()
    args = ["--quiet", "--learning_rate", str(config.learning_rate)]
    args += ["--power_t", str(config.power_t)]
    args += [flag for pair in config.interactions for flag in ("-q", pair)]
    em_model, token_model = vw.Workspace(args), vw.Workspace(args)
    em_parser, token_parser = vw.TextFormatParser(em_model), vw.TextFormatParser(token_model)
    em_lines, token_lines = _raw_lines(count // 2)
    started = _clock()
    for em_line, token_line in zip(em_lines, token_lines, strict=True):
        em_model.learn_one(em_parser.parse_line(em_line))
        token_model.learn_one(token_parser.parse_line(token_line))
    return 2 * len(em_lines) / (_clock() - started)


def _profile(interactions: int, traced: bool) -> pstats.Stats:
    profiler = cProfile.Profile()
    profiler.enable()
    _run(interactions, traced)
    profiler.disable()
    return pstats.Stats(profiler)


def _vw_learns(stats: pstats.Stats) -> int:
    """Calls of the VW binding's learn_one (controller/learners/vw.py) in a profile."""
    rows: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    return sum(
        row[1]
        for (filename, _, name), row in rows.items()
        if name == "learn_one" and filename.replace("\\", "/").endswith("learners/vw.py")
    )


def _print_parts(stats: pstats.Stats, label: str) -> None:
    rows: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in rows.values())
    shares: dict[str, float] = defaultdict(float)
    for (filename, _, function), row in rows.items():
        name = filename.replace("\\", "/") + ":" + function
        part = next((lbl for lbl, keys in PARTS if any(k in name for k in keys)), None)
        shares[part or "other (built-ins, the rest)"] += row[
            2
        ]  # own time, so nothing is counted twice
    print(f"\nshare of own time, by part of the path, {label} (under cProfile):")
    for part, seconds in sorted(shares.items(), key=lambda item: -item[1]):
        print(f"  {part:40} {seconds / total:6.1%}")


def main() -> None:
    """Measure, profile, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=100_000)
    parser.add_argument("--raw-learns", type=int, default=RAW_LEARNS)
    parser.add_argument("--quick", action="store_true", help="20k interactions, 40k raw learns")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time by this process's CPU time, not wall time (for a loaded machine)",
    )
    args = parser.parse_args()
    if args.quick:
        args.interactions, args.raw_learns = 20_000, 40_000
    global _clock  # noqa: PLW0603 - one switch for the whole run, set before any timing
    _clock = _CLOCKS["cpu" if args.cpu_time else "wall"]

    plain = _run(args.interactions, traced=False)
    traced = _run(args.interactions, traced=True)
    raw = _raw_learns_per_s(args.raw_learns)
    runs = (
        ("without traces", plain, False),
        (f"with counterfactuals (share {TRACE_SHARE:g}, coupling {COUPLING:g})", traced, True),
    )
    profiles = {t: _profile(args.interactions // 2, t) for _, _, t in runs}
    print(
        f"mixed-reasoning, {args.interactions:,} interactions per run, one core, one process, "
        f"{'CPU' if args.cpu_time else 'wall'} time"
    )
    print(
        f"  raw vowpal-wabbit-next learn_one (parse + learn, learner's lines): {raw:>9,.0f} "
        "learns/s"
    )
    for label, per_s, t in runs:
        learns = _vw_learns(profiles[t]) / (args.interactions // 2)
        print(
            f"  simulate path {label:44} {per_s:>9,.0f} interactions/s "
            f"({per_s / TARGET_PER_S:.2f}x the {TARGET_PER_S:,}/s target); "
            f"simulate/raw {per_s / raw:.3f} (target >= {RATIO_TARGET}: "
            f"{'met' if per_s / raw >= RATIO_TARGET else 'NOT met'}); "
            f"{learns:.2f} VW learns per interaction, so VW learns/s inside / raw "
            f"{per_s * learns / raw:.3f}"
        )
    print(f"  counterfactual / plain simulate: {traced / plain:.2f}")

    for label, _, t in runs:
        _print_parts(profiles[t], label)
        print(f"\ntop functions by own time, {label}:")
        profiles[t].sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
