"""`stopbandit demo`: a broker, the controller and a simulated fleet, live, in one command."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live

from stopbandit.controller.commands import StopSignals, UsageError
from stopbandit.controller.commands.simulate import add_trace_arguments, target_argument
from stopbandit.controller.demo.run import Demo, DemoSettings
from stopbandit.controller.demo.view import progress_table, save_plot, summary, summary_table
from stopbandit.controller.logs import configure_logging
from stopbandit.controller.sim.scenario import DEFAULT_SCENARIO, load_scenario

if TYPE_CHECKING:
    import argparse

# About a minute on the 2-core dev machine (60k took 38 s there, quiet; equal to simulate).
DEFAULT_INTERACTIONS = 80_000


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `demo` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="run a broker, the controller and a simulated fleet together, live",
        description=(
            "Start an embedded broker (or use --bootstrap), the controller daemon and a "
            "simulated fleet of serving nodes; show per segment how the thresholds move, "
            "and end with the token saving and EM change against never stopping early. "
            "With the same --interactions and --seed, the thresholds reached are those of "
            "`stopbandit simulate`."
        ),
    )
    parser.add_argument(
        "--scenario",
        type=Path,
        default=DEFAULT_SCENARIO,
        help="scenario YAML, or a shipped one by name (mixed-reasoning, token-budget)",
    )
    add_trace_arguments(parser)
    parser.add_argument(
        "--interactions", type=int, default=DEFAULT_INTERACTIONS, help="requests the fleet makes"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (same seed, same run)")
    parser.add_argument(
        "--publish-every", type=int, default=1000, help="publish policies every N requests"
    )
    parser.add_argument("--nodes", type=int, default=2, help="simulated serving nodes")
    parser.add_argument(
        "--bootstrap", help="use this Kafka broker (HOST:PORT) instead of an embedded one"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("stopbandit-demo"), help="folder for the plot and summary"
    )
    parser.add_argument(
        "--target",
        type=target_argument,
        metavar="FIELD=VALUE",
        help="target mode: token_reduction=0.45 or max_em_drop_pts=1 (λ plotted in the PNG)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; SIGINT/SIGTERM stop it cleanly with a partial summary."""
    if args.interactions < 1 or args.publish_every < 1 or args.nodes < 1:
        raise UsageError("--interactions, --publish-every and --nodes must be at least 1")
    try:
        load_scenario(args.scenario)
    except ValueError as error:
        raise UsageError(str(error)) from None
    configure_logging("auto", "warning")
    demo = Demo(
        DemoSettings(
            scenario_path=args.scenario,
            interactions=args.interactions,
            seed=args.seed,
            publish_every=args.publish_every,
            bootstrap_servers=args.bootstrap,
            nodes=args.nodes,
            trace_share=args.trace_share,
            coupling=args.coupling,
            target=args.target,
        )
    )
    signals = StopSignals(demo.stop)
    # With --json, stdout carries only the JSON; the live view goes to stderr.
    console = Console(stderr=args.json)

    def render() -> None:
        progress = demo.progress()
        if progress is not None:
            elapsed_s = time.monotonic() - demo.started_s
            live.update(progress_table(progress, args.interactions, elapsed_s))

    with Live(console=console, refresh_per_second=4, transient=False) as live:
        report = demo.run(on_tick=render)
    progress = demo.progress()
    plot = (
        save_plot(progress, args.out / "demo.png", target=report.get("target"))
        if progress is not None
        else None
    )
    result = summary(report, plot)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    if args.json:
        json.dump(result, sys.stdout, sort_keys=True)
        sys.stdout.write("\n")
    else:
        console.print(summary_table(result))
        if result["stopped_early"]:
            console.print("[yellow]stopped early[/yellow]")
        console.print(f"plot: {plot}  summary: {args.out / 'summary.json'}")
    return signals.exit_code
