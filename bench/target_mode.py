"""Target mode on the shipped scenarios: does the true token reduction hold the target?

For each scenario (mixed-reasoning at 45 %, drift-example at 30 %: targets the
reward binds on; mixed-reasoning already saves ~36 % at any λ, so 30 % would
leave λ at its floor) and seed, one `simulate` run in target mode; printed:

- the true token reduction (the scenario's expected tokens of what was
  served, control group included, against the reference arm) per 10k block
  and over the window after `--steady-from` interactions, against the target;
- λ at the end and its geometric mean over the last 20k interactions (the
  online λ: it dithers where the reduction jumps between arms);
- for the seeds in `--replay-seeds`, `replay --target` on the run's own log:
  the offline λ and its ratio to the online one (issue 13: within 20 %).

    .venv/bin/python bench/target_mode.py            # seeds 1-3, 80k, replay seed 1
    .venv/bin/python bench/target_mode.py --quick    # seed 1, 60k, no replay
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import yaml

from stopbandit.controller.commands.simulate import simulation_config
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.replay.calibrate import calibrate_log
from stopbandit.controller.replay.feed import replay
from stopbandit.controller.replay.sources import file_events
from stopbandit.controller.sim.scenario import load_scenario
from stopbandit.controller.sim.simulate import ControllerAgent, Simulation
from stopbandit.streams.files import event_log_writer

SCENARIOS = Path(__file__).parents[1] / "controller" / "sim" / "scenarios"
TARGETS = {"mixed-reasoning": 0.45, "drift-example": 0.30}
LAST = 20_000


def run_one(
    name: str, seed: int, interactions: int, control: float, log: Path | None
) -> dict[str, Any]:
    """One target-mode run; its report's target section, with the config used."""
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    settings: dict[str, Any] = {"control": {"fraction": control}} if control > 0 else {}
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "config.yaml"
        path.write_text(yaml.safe_dump(settings))
        config = simulation_config(scenario, path, target={"token_reduction": TARGETS[name]})
    core = ControllerCore(config)
    with event_log_writer(log) if log is not None else nullcontext() as out:
        report = Simulation(
            scenario,
            ControllerAgent(core),
            seed=seed,
            weights=config.reward,
            fallback_arm=config.default_arm,
            log=out,
        ).run(interactions)
    return {"target": report["target"], "config": config}


def window(target: dict[str, Any], start: int) -> float:
    """The true achieved value (points) over the blocks from `start` on."""
    blocks = [b for b in target["blocks"] if b["from"] >= start]
    # Blocks are equal in interactions, so their mean is the window's (up to the reference's
    # tokens varying between blocks, which the drift keeps small after it).
    return sum(b["true_achieved"] for b in blocks) / len(blocks)


def online_lambda(target: dict[str, Any]) -> float:
    """Geometric mean of λ over the last `LAST` interactions."""
    end = target["true_path"][-1][0]
    values = [row[1] for row in target["true_path"] if row[0] > end - LAST]
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main() -> None:
    """Run the grid and print one line per run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--interactions", type=int, default=80_000)
    parser.add_argument("--steady-from", type=int, default=50_000)
    parser.add_argument("--control", type=float, default=0.15, help="control.fraction")
    parser.add_argument("--replay-seeds", default="1")
    parser.add_argument("--quick", action="store_true", help="seed 1, 60k, no replay")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.interactions, args.replay_seeds = "1", 60_000, ""
    seeds = [int(s) for s in args.seeds.split(",") if s]
    replay_seeds = {int(s) for s in args.replay_seeds.split(",") if s}
    print(
        f"target mode: {args.interactions:,} interactions, control.fraction {args.control}, "
        f"steady window from {args.steady_from:,}"
    )
    print("scenario         seed target  steady  blocks (true, pts)                    "
          "λ_end   λ_online λ_offline ratio")  # fmt: skip
    for name, goal in TARGETS.items():
        for seed in seeds:
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as directory:
                log = Path(directory) / "events.jsonl.gz" if seed in replay_seeds else None
                result = run_one(name, seed, args.interactions, args.control, log)
                target = result["target"]
                offline = ""
                online = online_lambda(target)
                if log is not None:
                    replayed = replay(file_events([log]), result["config"], learn=True)
                    value = calibrate_log(replayed, f"token_reduction={goal}").lambda_
                    offline = f"{value:.4f}    {value / online:.2f}"
            blocks = " ".join(f"{b['true_achieved']:.1f}" for b in target["blocks"])
            print(
                f"{name:16} {seed:4} {target['target']:6.1f} "
                f"{window(target, args.steady_from):7.2f}  {blocks:37} "
                f"{target['lambda']:.4f}  {online:.4f}   {offline}"
                f"   ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
