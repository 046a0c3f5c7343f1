"""`stopbandit simulate`: run a scenario's simulated fleet against the controller in-process."""

from __future__ import annotations

import argparse
import io
import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from stopbandit.controller.commands import UsageError
from stopbandit.controller.config import StopbanditConfig, load_config
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.sim.control import ControlLedger
from stopbandit.controller.sim.scenario import DEFAULT_SCENARIO, Scenario, load_scenario
from stopbandit.controller.sim.simulate import ControllerAgent, Simulation
from stopbandit.streams.arms import arm_label
from stopbandit.streams.files import EventLogWriter, event_log_writer


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `simulate` subcommand."""
    parser = subparsers.add_parser(
        "simulate",
        help="run a simulated fleet against the controller, in-process",
        description=(
            "Simulate a fleet (a scenario file) drawing thresholds from the controller's "
            "policies and feeding decisions and outcomes back through the join and learners."
        ),
    )
    parser.add_argument(
        "--scenario",
        type=Path,
        default=DEFAULT_SCENARIO,
        help="scenario YAML, or a shipped one by name (mixed-reasoning, token-budget)",
    )
    parser.add_argument("--interactions", type=int, default=100_000, help="requests to simulate")
    parser.add_argument("--seed", type=int, default=1, help="random seed (same seed, same run)")
    parser.add_argument("--token-cost", type=float, help="reward.token_cost_per_1k")
    parser.add_argument("--em-weight", type=float, help="reward.em_weight")
    parser.add_argument(
        "--default-arm", type=float, help="threshold to start from (default: the reference arm)"
    )
    parser.add_argument("--config", type=Path, help="controller config YAML")
    parser.add_argument(
        "--publish-every", type=int, default=1000, help="republish policies every N interactions"
    )
    add_trace_arguments(parser)
    parser.add_argument(
        "--target",
        type=target_argument,
        metavar="FIELD=VALUE",
        help="target mode: token_reduction=0.45 or max_em_drop_pts=1 (tunes the token cost)",
    )
    parser.add_argument(
        "--control-fraction",
        type=_control_fraction,
        help="control.fraction: share of requests served at control.arm, to measure savings",
    )
    parser.add_argument("--log-events", type=Path, help="write every event as JSON lines (.gz ok)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.set_defaults(handler=run)


def add_trace_arguments(parser: argparse.ArgumentParser) -> None:
    """`--trace-share` and `--coupling`: counterfactual traces, overriding the scenario's."""
    parser.add_argument(
        "--trace-share",
        type=_fraction,
        help="share of requests whose node sends counterfactual traces (overrides the scenario)",
    )
    parser.add_argument(
        "--coupling",
        type=_fraction,
        help="how alike one request's outcomes at different arms are, 0-1 (overrides the scenario)",
    )


def target_argument(text: str) -> dict[str, float]:
    """`token_reduction=0.45` or `max_em_drop_pts=1` as the config's `target` section."""
    name, sep, value = text.partition("=")
    if not sep or name not in ("token_reduction", "max_em_drop_pts"):
        raise argparse.ArgumentTypeError(
            f"expected token_reduction=X or max_em_drop_pts=X, got {text!r}"
        )
    try:
        return {name: float(value)}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: {value!r} is not a number") from None


def _control_fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 0.5:  # noqa: PLR2004 - the contract's bound (streams.events)
        raise argparse.ArgumentTypeError(f"must be in [0, 0.5], got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def simulation_config(
    scenario: Scenario,
    config_path: Path | None,
    *,
    token_cost: float | None = None,
    em_weight: float | None = None,
    default_arm: float | None = None,
    target: dict[str, float] | None = None,
    control_fraction: float | None = None,
) -> StopbanditConfig:
    """The controller config for a simulated run: the file, the scenario's arms, and flags.

    `target` replaces the file's target (the other target settings stay).
    """
    base = load_config(config_path)
    extra: dict[str, Any] = {}
    if target is not None:
        section = base.target.model_dump(exclude_unset=True)
        section.pop("token_reduction", None)
        section.pop("max_em_drop_pts", None)
        extra["target"] = {**section, **target}
    if control_fraction is not None:
        extra["control"] = base.control.model_dump() | {"fraction": control_fraction}
    reward: dict[str, float] = base.reward.model_dump()
    if token_cost is not None:
        reward["token_cost_per_1k"] = token_cost
    if em_weight is not None:
        reward["em_weight"] = em_weight
    return load_config(
        config_path,
        knob=scenario.knob,
        arms=scenario.arms,
        reference_arm=scenario.reference_arm,
        default_arm=scenario.reference_arm if default_arm is None else default_arm,
        reward=reward,
        **extra,
    )


def simulated_event_lines(scenario_path: Path, interactions: int, seed: int) -> list[bytes]:
    """Every event (decision, outcome, ...) of a default-config run, as wire JSON lines.

    What tests and benchmarks produce to a broker to drive the daemon.
    """
    scenario = load_scenario(scenario_path)
    config = simulation_config(scenario, None)
    buffer = io.BytesIO()
    Simulation(
        scenario,
        ControllerAgent(ControllerCore(config)),
        seed=seed,
        weights=config.reward,
        fallback_arm=config.default_arm,
        log=EventLogWriter(buffer),
    ).run(interactions)
    return buffer.getvalue().splitlines()


def run(args: argparse.Namespace) -> int:
    """Run the simulation and print its report."""
    if args.interactions < 1 or args.publish_every < 1:
        raise UsageError("--interactions and --publish-every must be at least 1")
    try:
        scenario = load_scenario(args.scenario).with_trace(args.trace_share, args.coupling)
    except ValueError as error:
        raise UsageError(str(error)) from None
    config = simulation_config(
        scenario,
        args.config,
        token_cost=args.token_cost,
        em_weight=args.em_weight,
        default_arm=args.default_arm,
        target=args.target,
        control_fraction=args.control_fraction,
    )
    agent = ControllerAgent(ControllerCore(config))
    ledger = (
        ControlLedger(config.control.fraction, config.control_arm, config.control.top_segments)
        if config.control.fraction > 0.0
        else None
    )
    log_context = event_log_writer(args.log_events) if args.log_events else nullcontext()
    with log_context as log:
        simulation = Simulation(
            scenario,
            agent,
            seed=args.seed,
            weights=config.reward,
            fallback_arm=config.default_arm,
            publish_every=args.publish_every,
            log=log,
            guardrail=config.guardrail,
            control=ledger,
        )
        report = simulation.run(args.interactions)
    if args.json:
        json.dump(report, sys.stdout, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print_report(report)
    return 0


def print_report(report: dict[str, Any]) -> None:
    """A human-readable summary of a simulation report."""
    console = Console()
    online, final = report["online"], report["final_policy"]
    console.print(
        f"[bold]{report['scenario']}[/bold]: {report['interactions']:,} interactions, "
        f"seed {report['seed']}, {report['interactions_per_s']:,.0f} interactions/s"
    )
    arm = "budget" if report.get("knob") == "token_budget" else "threshold"
    table = Table("segment", f"greedy {arm}", f"oracle {arm}")
    for segment, greedy in final["arms"].items():
        table.add_row(segment, arm_label(greedy), arm_label(report["oracle"]["arms"][segment]))
    console.print(table)
    summary = Table("", "gap closed", "token reduction", "EM change (pts)", "reward")
    for name, figures in (("online", online), ("final policy", final)):
        summary.add_row(
            name,
            f"{figures['gap_closed']:.3f}",
            f"{figures['token_reduction']:.1%}",
            f"{-figures['em_drop_pts']:+.2f}",
            f"{figures['reward']:.4f}",
        )
    best = report["best_global"]
    summary.add_row(
        f"best fixed {arm_label(best['arm'])}",
        f"{best['gap_closed']:.3f}",
        "",
        "",
        f"{best['reward']:.4f}",
    )
    console.print(summary)
    target = report.get("target")
    if target is not None:
        steady = [b["true_achieved"] for b in target["blocks"][len(target["blocks"]) // 2 :]]
        truth = f"{sum(steady) / len(steady):.2f}" if steady else "n/a"
        console.print(
            f"target mode: {target['metric']} target {target['target']:.2f} pts; "
            f"token_cost_per_1k λ = {target['lambda']:.4g} after {target['updates']} steps; "
            f"measured over the last step {target['achieved'] or 0.0:.2f} pts, "
            f"true over the second half of the run {truth} pts"
        )
    if "control" in report:
        print_control(console, report["control"])


def print_control(console: Console, control: dict[str, Any]) -> None:
    """The control group's fleet-wide figures, with their 95 % intervals and the truth."""
    fleet, truth = control["fleet"], control["truth"]["fleet"]
    requests = fleet["requests"]
    console.print(
        f"control group ({control['control']['fraction']:.1%} at {control['control']['arm']:g}): "
        f"{requests['control']:,} control vs {requests['controlled']:,} controlled requests"
    )
    table = Table("vs control", "reported", "95 % interval", "truth")
    for key, label, digits in (
        ("em_change_pts", "EM change (pts)", 2),
        ("tokens_change", "tokens per request", 1),
        ("token_reduction", "token reduction", 3),
    ):
        figure = fleet[key]
        if figure["estimate"] is None:
            table.add_row(label, "n/a", "", "")
            continue
        value = truth.get(key)
        table.add_row(
            label,
            f"{figure['estimate']:+.{digits}f}",
            f"[{figure['low']:+.{digits}f}, {figure['high']:+.{digits}f}]",
            "" if value is None else f"{value:+.{digits}f}",
        )
    console.print(table)
