"""`stopbandit fleet`: simulated serving nodes against a real broker and a running controller."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from kafka.errors import KafkaError
from rich.console import Console

from stopbandit.controller.commands import StopSignals, UsageError
from stopbandit.controller.commands.simulate import add_trace_arguments, simulation_config
from stopbandit.controller.demo.view import progress_table
from stopbandit.controller.logs import configure_logging
from stopbandit.controller.sim.fleet import Fleet
from stopbandit.controller.sim.scenario import DEFAULT_SCENARIO, load_scenario
from stopbandit.policies.client import PolicyClient
from stopbandit.policies.emitter import EventEmitter
from stopbandit.policies.sources import TopicFollower

if TYPE_CHECKING:
    import argparse

log = structlog.get_logger(__name__)

HMAC_KEY_ENV = "STOPBANDIT_PUBLISH__HMAC_KEY"
FOLLOWER_START_TIMEOUT_S = 30.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `fleet` subcommand."""
    parser = subparsers.add_parser(
        "fleet",
        help="run simulated serving nodes against a broker (and a running controller)",
        description=(
            "Simulated serving nodes: each follows the policies topic with a PolicyClient, "
            "draws thresholds for the scenario's requests, and writes decisions and "
            f"outcomes to the events topic. If ${HMAC_KEY_ENV} is set, the nodes reject "
            "policies not signed with it."
        ),
    )
    parser.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO, help="scenario YAML")
    add_trace_arguments(parser)
    parser.add_argument("--bootstrap", required=True, help="Kafka broker(s), HOST:PORT[,...]")
    parser.add_argument(
        "--rate", type=float, default=200.0, help="requests per second (0: no limit)"
    )
    parser.add_argument("--interactions", type=int, default=10_000, help="requests to make")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument("--nodes", type=int, default=2, help="simulated serving nodes")
    parser.add_argument("--events-topic", default="stopbandit.events", help="events topic")
    parser.add_argument("--policies-topic", default="stopbandit.policies", help="policies topic")
    parser.add_argument(
        "--fallback-threshold",
        type=float,
        help="threshold when no policy is known (default: the scenario's reference arm)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the fleet until done or SIGINT/SIGTERM; print its report."""
    if args.interactions < 1 or args.nodes < 1 or args.rate < 0:
        raise UsageError("--interactions and --nodes must be at least 1, --rate at least 0")
    try:
        scenario = load_scenario(args.scenario).with_trace(args.trace_share, args.coupling)
    except ValueError as error:
        raise UsageError(str(error)) from None
    configure_logging("auto", "warning")
    config = simulation_config(scenario, None)
    fallback = (
        scenario.reference_arm if args.fallback_threshold is None else args.fallback_threshold
    )
    key = os.environ.get(HMAC_KEY_ENV)
    bootstrap = args.bootstrap.split(",")
    nodes = [
        PolicyClient(fallback_threshold=fallback, hmac_key=key.encode() if key else None)
        for _ in range(args.nodes)
    ]
    followers = [TopicFollower(node, bootstrap, args.policies_topic) for node in nodes]
    try:
        emitter = EventEmitter(bootstrap, args.events_topic, client_id="stopbandit-fleet")
    except KafkaError as error:
        raise UsageError(f"--bootstrap {args.bootstrap}: cannot connect ({error!r})") from None
    fleet = Fleet(
        scenario,
        nodes,
        emitter,
        seed=args.seed,
        weights=config.reward,
        fallback_threshold=fallback,
        rate_per_s=args.rate or None,
    )
    signals = StopSignals(fleet.stop)
    try:
        for follower in followers:
            follower.start()
        for follower in followers:
            if not follower.wait_caught_up(FOLLOWER_START_TIMEOUT_S):
                log.warning("fleet.policies_not_read", topic=args.policies_topic)
        made = fleet.run(args.interactions)
    finally:
        for follower in followers:
            follower.close()
        emitter.close()
    report = fleet.report()
    report["stopped_early"] = made < args.interactions
    if args.json:
        json.dump(report, sys.stdout, sort_keys=True)
        sys.stdout.write("\n")
    else:
        console = Console()
        console.print(progress_table(fleet.progress(), args.interactions, 0.0))
        console.print(f"events: {report['emitter']}")
    return signals.exit_code
