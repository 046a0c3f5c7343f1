"""The EM guardrail: what it keeps and what it costs, on a fleet whose reward-best arm loses EM.

Runs the simulated fleet of tests/data/scenarios/long-answers.yaml (its
long-form segment's reward-best arm, 0.7, loses 7 EM points) at token cost
0.02, with `guardrail.max_em_drop_pts` (default 1) and without, per feedback
(bandit; counterfactual traces at share 1, coupling 0.8) and seed, and prints:

- gap closed, online and final, against the guardrailed oracle (each
  segment's best arm among those whose true EM drop is within δ) and, for
  the unguarded run, against the plain oracle;
- per segment: the final greedy arm and its true EM drop, the online EM
  drop with the 95 % half-width of measuring it from the segment's own
  outcomes, and the realised exploration share;
- issue 13's checks: no final greedy arm truly drops more than δ; every
  segment's online drop within δ plus its half-width; final gap closed
  against the guardrailed oracle >= 0.95 at the last mark.

    .venv/bin/python bench/guardrail.py                    # seeds 1-3, 100k, both feedbacks
    .venv/bin/python bench/guardrail.py --quick            # seed 1, 30k, bandit
    .venv/bin/python bench/guardrail.py --max-em-drop-pts 0.5 --seeds 1-5
"""

from __future__ import annotations

import argparse
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from seeds import seed_list

from stopbandit.controller.commands.simulate import simulation_config
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.sim.scenario import load_scenario
from stopbandit.controller.sim.simulate import ControllerAgent, Simulation

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "tests" / "data" / "scenarios" / "long-answers.yaml"
COST = 0.02
COUPLING = 0.8
GAP_TARGET = 0.95


class Job(NamedTuple):
    """One simulated run."""

    scenario: str
    feedback: str
    seed: int
    interactions: int
    max_em_drop_pts: float | None


def run_one(job: Job) -> dict[str, Any]:
    """One run's report (see controller.sim.simulate), with the job beside it."""
    scenario = load_scenario(Path(job.scenario))
    if job.feedback == "counterfactual":
        scenario = scenario.with_trace(1.0, COUPLING)
    config = simulation_config(scenario, None, token_cost=COST)
    if job.max_em_drop_pts is not None:
        guardrail = config.guardrail.model_copy(update={"max_em_drop_pts": job.max_em_drop_pts})
        config = config.model_copy(update={"guardrail": guardrail})
    simulation = Simulation(
        scenario,
        ControllerAgent(ControllerCore(config)),
        seed=job.seed,
        weights=config.reward,
        fallback_arm=config.default_arm,
        guardrail=config.guardrail,
    )
    return {"job": job, "report": simulation.run(job.interactions)}


def _print_run(result: dict[str, Any]) -> list[str]:
    """One run's rows; returns the checks it fails."""
    job, report = result["job"], result["report"]
    guarded = job.max_em_drop_pts is not None
    label = f"δ={job.max_em_drop_pts:g}" if guarded else "no guardrail"
    online, final = report["online"], report["final_policy"]
    print(
        f"\n{job.feedback:14} seed {job.seed}  {label:12}  gap closed online "
        f"{online['gap_closed']:.3f}  final {final['gap_closed']:.3f}  "
        f"(oracle {'guardrailed' if guarded else 'unconstrained'}); exploration share "
        f"{online['exploration_share']:.3f}; EM change online {-online['em_drop_pts']:+.2f} pts, "
        f"tokens -{online['token_reduction']:.1%}"
    )
    print(
        f"  {'segment':32} {'greedy':>6} {'oracle':>6} {'final drop':>10} "
        f"{'online drop':>11} {'± 95 %':>7} {'requests':>8}"
    )
    failed = []
    for key, row in report["segments"].items():
        print(
            f"  {key:32} {final['arms'][key]:>6g} {report['oracle']['arms'][key]:>6g} "
            f"{row['final_em_drop_pts']:>10.2f} {row['online_em_drop_pts']:>11.2f} "
            f"{row['online_em_drop_halfwidth_pts']:>7.2f} {row['interactions']:>8}"
        )
        if not guarded:
            continue
        limit = row["max_em_drop_pts"]
        if row["final_em_drop_pts"] > limit + 1e-9:
            failed.append(f"{job.feedback} seed {job.seed} {key}: final greedy drops more than δ")
        if row["online_em_drop_pts"] > limit + row["online_em_drop_halfwidth_pts"]:
            failed.append(f"{job.feedback} seed {job.seed} {key}: online drop over δ + interval")
    if guarded and final["gap_closed"] < GAP_TARGET:
        failed.append(f"{job.feedback} seed {job.seed}: final gap closed < {GAP_TARGET}")
    return failed


def main() -> int:
    """Run the grid and print every run, the means, and the checks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=SCENARIO)
    parser.add_argument("--seeds", default="1-3")
    parser.add_argument("--interactions", type=int, default=100_000)
    parser.add_argument("--feedback", default="bandit,counterfactual")
    parser.add_argument("--max-em-drop-pts", type=float, default=1.0)
    parser.add_argument("--no-unguarded", dest="unguarded", action="store_false")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="seed 1, 30k, bandit")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.interactions, args.feedback = "1", 30_000, "bandit"
    limits: list[float | None] = [args.max_em_drop_pts] + ([None] if args.unguarded else [])
    jobs = [
        Job(str(args.scenario), feedback, seed, args.interactions, limit)
        for feedback in args.feedback.split(",")
        for limit in limits
        for seed in seed_list(args.seeds)
    ]
    print(
        f"{len(jobs)} runs: {args.scenario.name}, cost {COST}, {args.interactions:,} interactions, "
        f"seeds {args.seeds}, feedback {args.feedback}, δ {args.max_em_drop_pts:g} pts"
    )
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run_one, jobs))
    failed: list[str] = []
    for result in results:
        failed += _print_run(result)
    print("\nmean over seeds: gap closed online / final")
    for feedback in args.feedback.split(","):
        for limit in limits:
            rows = [
                r["report"]
                for r in results
                if (r["job"].feedback, r["job"].max_em_drop_pts) == (feedback, limit)
            ]
            online = statistics.mean(r["online"]["gap_closed"] for r in rows)
            final = statistics.mean(r["final_policy"]["gap_closed"] for r in rows)
            share = statistics.mean(r["online"]["exploration_share"] for r in rows)
            label = f"δ={limit:g}" if limit is not None else "no guardrail"
            print(
                f"  {feedback:14} {label:12} online {online:.3f}  final {final:.3f}  "
                f"exploration share {share:.3f}"
            )
    print("\nissue 13 guardrail checks: " + ("all hold" if not failed else f"{len(failed)} fail"))
    for line in failed:
        print("  - " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
