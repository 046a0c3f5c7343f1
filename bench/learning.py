"""Learning quality: stopbandit against the baselines, on every scenario, in one run.

For each scenario, seed and token cost, runs the simulated fleet with each
learner and prints the online and final-policy gap closed at each mark
(default 30k and 100k interactions), plus the best fixed threshold in
hindsight, then the mean over seeds per scenario and cost, and the checks
of issue 2 (stopbandit final >= 0.97 and online >= 0.90 at the last mark on
mixed-reasoning; above both learning baselines at every mark).

    .venv/bin/python bench/learning.py                     # everything, ~10 min on 2 cores
    .venv/bin/python bench/learning.py --seeds 1 --marks 30000
"""

from __future__ import annotations

import argparse
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import ThompsonAgent, VWEpsilonAgent  # noqa: E402

from controller.commands.simulate import simulation_config  # noqa: E402
from controller.core import ControllerCore  # noqa: E402
from controller.scenario import SHIPPED_DIR, load_scenario  # noqa: E402
from controller.simulate import Agent, ControllerAgent, Simulation  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LEARNERS = ("stopbandit", "thompson", "vw-epsilon")


def run_one(job: tuple[str, str, int, float, tuple[int, ...]]) -> dict[str, Any]:
    """One simulated run; returns the figures at each mark."""
    scenario_path, learner, seed, cost, marks = job
    scenario = load_scenario(Path(scenario_path))
    config = simulation_config(scenario, None, token_cost=cost)
    agent: Agent
    if learner == "stopbandit":
        agent = ControllerAgent(ControllerCore(config))
    elif learner == "thompson":
        agent = ThompsonAgent(list(config.arms), config.reward, seed)
    else:
        agent = VWEpsilonAgent(list(config.arms), config.reward)
    simulation = Simulation(
        scenario, agent, seed=seed, weights=config.reward, fallback_arm=config.default_arm
    )
    final = simulation.run(max(marks), snapshot_at=marks)
    reports = {mark: simulation.snapshots.get(mark, final) for mark in marks}
    return {
        "scenario": scenario.name,
        "learner": learner,
        "seed": seed,
        "cost": cost,
        "marks": {
            mark: {
                "online": r["online"]["gap_closed"],
                "final": r["final_policy"]["gap_closed"],
                "best_fixed": r["best_global"]["gap_closed"],
                "interactions_per_s": r["interactions_per_s"],
            }
            for mark, r in reports.items()
        },
    }


def main() -> int:
    """Run the grid and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_scenarios = sorted(SHIPPED_DIR.glob("*.yaml")) + sorted(
        (ROOT / "tests" / "data" / "scenarios").glob("*.yaml")
    )
    parser.add_argument("--scenario", type=Path, action="append", dest="scenarios")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--costs", default="0.02,0.005")
    parser.add_argument("--marks", default="30000,100000")
    parser.add_argument("--learners", default=",".join(LEARNERS))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    scenarios = args.scenarios or default_scenarios
    seeds = [int(s) for s in args.seeds.split(",")]
    costs = [float(c) for c in args.costs.split(",")]
    marks = tuple(int(m) for m in args.marks.split(","))
    learners = args.learners.split(",")
    jobs = [
        (str(path), learner, seed, cost, marks)
        for path in scenarios
        for cost in costs
        for seed in seeds
        for learner in learners
    ]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(run_one, jobs))

    header = f"{'scenario':22} {'cost':>6} {'seed':>4} {'learner':11}"
    for mark in marks:
        header += f" | {mark // 1000:>4}k online  final"
    print(header + " | best fixed")
    for r in results:
        line = f"{r['scenario']:22} {r['cost']:>6} {r['seed']:>4} {r['learner']:11}"
        for mark in marks:
            m = r["marks"][mark]
            line += f" |       {m['online']:6.3f} {m['final']:6.3f}"
        print(line + f" | {r['marks'][marks[-1]]['best_fixed']:6.3f}")

    print("\nmean over seeds")
    failures: list[str] = []
    groups = sorted({(r["scenario"], r["cost"]) for r in results})
    for scenario, cost in groups:
        group = [r for r in results if (r["scenario"], r["cost"]) == (scenario, cost)]
        for learner in learners:
            rows = [r for r in group if r["learner"] == learner]
            line = f"{scenario:22} {cost:>6}      {learner:11}"
            for mark in marks:
                online = statistics.mean(r["marks"][mark]["online"] for r in rows)
                final = statistics.mean(r["marks"][mark]["final"] for r in rows)
                line += f" |       {online:6.3f} {final:6.3f}"
            print(line)
        for mark in marks:
            for seed in seeds:
                by = {r["learner"]: r["marks"][mark] for r in group if r["seed"] == seed}
                ours = by.get("stopbandit")
                if ours is None:
                    continue
                for other in ("thompson", "vw-epsilon"):
                    if other in by and ours["online"] <= by[other]["online"]:
                        failures.append(
                            f"{scenario} cost {cost} seed {seed} {mark}: online "
                            f"{ours['online']:.3f} <= {other} {by[other]['online']:.3f}"
                        )
                if scenario == "mixed-reasoning" and mark == marks[-1]:
                    if ours["final"] < 0.97:  # noqa: PLR2004 - issue 2's target
                        failures.append(
                            f"{scenario} cost {cost} seed {seed}: final {ours['final']:.3f} < 0.97"
                        )
                    if ours["online"] < 0.90:  # noqa: PLR2004 - issue 2's target
                        failures.append(
                            f"{scenario} cost {cost} seed {seed}: online {ours['online']:.3f} < 0.90"
                        )
    rates = [
        r["marks"][marks[-1]]["interactions_per_s"] for r in results if r["learner"] == "stopbandit"
    ]
    print(
        f"\nstopbandit simulate path: median {statistics.median(rates):,.0f} interactions/s "
        f"({args.workers} workers sharing the machine)"
    )
    print("\nchecks: " + ("all met" if not failures else f"{len(failures)} not met"))
    for failure in failures:
        print("  - " + failure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
