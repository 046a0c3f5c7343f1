"""`stopbandit report`: what the policies earned, controlled traffic against the control group.

Reads an event log (`--log-events` of simulate, an archive of the topic:
JSON lines, .gz ok) or a range of the events topic, joins decisions to
outcomes as the daemon does (same codec, same join window, event time), and
prints per segment and fleet-wide the EM and tokens of both groups with the
differences and their intervals (`controller.savings`). Control-group
membership is recomputed from each request_id and the control fraction in
force when the events were logged: the config's `control.fraction`, or
`--control-fraction` for a log written under another.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Column, Table

from stopbandit.controller.commands import UsageError
from stopbandit.controller.config import load_config
from stopbandit.controller.logs import configure_logging
from stopbandit.controller.savings import (
    CONTROL,
    CONTROLLED,
    OTHER_SEGMENTS,
    Z_95,
    SavingsTally,
    savings,
)
from stopbandit.streams.codec import InvalidEventError, decode
from stopbandit.streams.join import JoinBuffer, JoinMismatchError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterable

    from stopbandit.controller.config import StopbanditConfig
    from stopbandit.controller.replay.feed import RawEvent
    from stopbandit.streams.files import LogDamage

EXPIRE_EVERY_EVENTS = 1000


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `report` subcommand."""
    parser = subparsers.add_parser(
        "report",
        help="EM and tokens of controlled traffic against the control group, from a log",
        description=(
            "Join a log's (or the events topic's) decisions and outcomes and compare what "
            "the policies served with the control group, per segment and fleet-wide, with "
            "95 %% intervals."
        ),
    )
    parser.add_argument("logs", nargs="*", type=Path, metavar="LOG", help="event logs (.gz ok)")
    parser.add_argument("--config", type=Path, help="controller config YAML (control, join)")
    parser.add_argument(
        "--control-fraction",
        type=float,
        help="the control fraction the events were logged under (default: control.fraction)",
    )
    parser.add_argument(
        "--control-arm", type=float, help="the control arm (default: control.arm or reference)"
    )
    parser.add_argument("--top", type=int, help="segments by name (default: control.top_segments)")
    parser.add_argument("--bootstrap", metavar="HOST:PORT", help="read the events topic instead")
    parser.add_argument("--topic", help="events topic (with --bootstrap)")
    parser.add_argument("--from", dest="start", metavar="X", help="first offset or ISO time")
    parser.add_argument("--to", dest="end", metavar="Y", help="offset or ISO time to stop before")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.set_defaults(handler=run)


@dataclass
class JoinedEvents:
    """What reading the events did: events, invalid ones by kind, interactions, join counters."""

    events: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    interactions: int = 0
    damaged: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "events": self.events,
            "invalid": dict(sorted(self.invalid.items())),
            "interactions": self.interactions,
            "damaged": self.damaged,
        }


def tally_events(
    events: Iterable[RawEvent], config: StopbanditConfig, tally: SavingsTally
) -> JoinedEvents:
    """Decode and join `events` (event time, the config's join window) into `tally`."""
    join = JoinBuffer(
        wait_s=config.join.wait_s,
        max_pending=config.join.max_pending,
        dedup_capacity=config.join.dedup_capacity,
    )
    stats = JoinedEvents()
    watermark = float("-inf")
    for raw in events:
        stats.events += 1
        try:
            event = decode(raw.key, raw.value)
            watermark = max(watermark, event.ts)
            interaction = join.add(event, watermark)
        except InvalidEventError as error:
            stats.invalid[error.kind] += 1
            continue
        except JoinMismatchError:
            stats.invalid["segment"] += 1
            continue
        if stats.events % EXPIRE_EVERY_EVENTS == 0:
            join.expire(watermark)
        if interaction is not None:
            stats.interactions += 1
            tally.add(interaction)
    return stats


def _events(args: argparse.Namespace, config: StopbanditConfig, stats_damaged: list[str]) -> Any:  # noqa: ANN401 - an iterable of RawEvent
    # Imported here: the replay sources pull in kafka-python's consumer.
    from stopbandit.controller.replay.sources import (  # noqa: PLC0415
        RangeBound,
        file_events,
        read_topic_range,
    )

    if args.bootstrap:
        if not args.topic:
            raise UsageError("--bootstrap needs --topic")
        from kafka.errors import KafkaError  # noqa: PLC0415

        from stopbandit.streams.kafka import client_settings  # noqa: PLC0415

        try:
            start = RangeBound.parse(args.start) if args.start else None
            end = RangeBound.parse(args.end) if args.end else None
        except ValueError as error:
            raise UsageError(f"--from/--to: {error}") from None
        settings = {
            k: v for k, v in client_settings(config.kafka).items() if k != "bootstrap_servers"
        }
        try:
            return read_topic_range(
                [args.bootstrap], args.topic, start, end, consumer_settings=settings
            ).events
        except (KafkaError, ValueError, TimeoutError) as error:
            raise UsageError(
                f"--bootstrap {args.bootstrap} --topic {args.topic}: {error}"
            ) from None
    if not args.logs:
        raise UsageError("give event logs, or --bootstrap and --topic")
    missing = [str(p) for p in args.logs if not p.is_file()]
    if missing:
        raise UsageError(f"no such log: {', '.join(missing)}")

    def warn(damage: LogDamage) -> None:
        stats_damaged.append(str(damage))
        print(f"stopbandit: warning: {damage}; reporting the lines before it", file=sys.stderr)  # noqa: T201

    return file_events(args.logs, warn)


def run(args: argparse.Namespace) -> int:
    """Read, join, compare, print."""
    config = load_config(args.config)
    configure_logging(config.log.format, config.log.level)
    fraction = config.control.fraction if args.control_fraction is None else args.control_fraction
    if not 0.0 <= fraction <= 0.5:  # noqa: PLR2004 - the contract's bound
        raise UsageError(f"--control-fraction: must be in [0, 0.5], got {fraction:g}")
    arm = config.control_arm if args.control_arm is None else args.control_arm
    if config.arm_index(arm) is None:
        raise UsageError(f"--control-arm: {arm:g} is not one of the arms {config.arms}")
    top = config.control.top_segments if args.top is None else args.top
    if top < 0:
        raise UsageError("--top: must be >= 0")
    damaged: list[str] = []
    tally = SavingsTally(fraction, arm)
    stats = tally_events(_events(args, config, damaged), config, tally)
    stats.damaged = damaged
    document = savings(tally, top).to_json()
    document["input"] = stats.to_json()
    if args.json:
        json.dump(document, sys.stdout, sort_keys=True, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print_report(document)
    return 0


_REASONS = {
    "fallback": "the node knew no policy (version 0)",
    "control_not_served": "in the control group but served at another arm",
}


def _pair(first: float | None, second: float | None, form: str) -> str:
    return " / ".join("-" if v is None else format(v, form) for v in (first, second))


def _interval(figure: dict[str, float | None], digits: int, *, scale: float = 1.0) -> str:
    estimate, low, high = figure["estimate"], figure["low"], figure["high"]
    if estimate is None or low is None or high is None:
        return "n/a"
    return f"{estimate * scale:+.{digits}f} [{low * scale:+.{digits}f}, {high * scale:+.{digits}f}]"


def _rows(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The fleet, then the segments by traffic, the pooled rest last."""
    segments = document["segments"]
    named = sorted(
        (name for name in segments if name != OTHER_SEGMENTS),
        key=lambda name: (-sum(segments[name]["requests"].values()), name),
    )
    rows = [("fleet", document["fleet"])] + [(name, segments[name]) for name in named]
    if OTHER_SEGMENTS in segments:
        rows.append(("(other segments)", segments[OTHER_SEGMENTS]))
    return rows


def _cells(index: int, name: str, figures: dict[str, Any]) -> list[str]:
    requests, em, tokens = figures["requests"], figures["em"], figures["tokens"]
    em_pct = [None if v is None else 100 * v for v in (em[CONTROLLED], em[CONTROL])]
    return [
        f"[bold]{name}[/bold]" if index == 0 else name,
        f"{requests[CONTROLLED]:,} / {requests[CONTROL]:,}",
        _pair(em_pct[0], em_pct[1], ".1f"),
        _interval(figures["em_change_pts"], 2),
        _pair(tokens[CONTROLLED], tokens[CONTROL], ",.0f"),
        _interval(figures["token_reduction"], 1, scale=100.0),
    ]


_HEADERS = ("segment", "requests", "EM, %", "EM change, pts", "tokens", "token reduction, %")


def print_report(document: dict[str, Any]) -> None:
    """The report as a person reads it: what was compared, then one row per segment."""
    console = Console(highlight=False)
    control, stats = document["control"], document["input"]
    invalid = sum(stats["invalid"].values())
    console.print(
        f"[bold]Policies vs control group[/bold]: {control['fraction']:.1%} of requests served "
        f"at arm {control['arm']:g}; {stats['interactions']:,} joined requests from "
        f"{stats['events']:,} events" + (f", {invalid:,} invalid" if invalid else "")
    )
    if not control["fraction"]:
        console.print(
            "[yellow]No control group (control.fraction is 0): nothing to compare against. "
            "Set control.fraction, or pass --control-fraction for a log written with one."
            "[/yellow]"
        )
    rows = [_cells(i, name, figures) for i, (name, figures) in enumerate(_rows(document))]
    # Each figure on one line when the table fits the console; wrapped rather than cut if not.
    widths = [max(len(header), *(len(row[k]) for row in rows)) for k, header in enumerate(_HEADERS)]
    fits = sum(widths) + 3 * len(widths) + 1 <= console.width
    table = Table(
        Column(_HEADERS[0], overflow="fold"),
        *(Column(h, no_wrap=fits, justify="right") for h in _HEADERS[1:]),
        caption="each pair: policies / control; intervals: 95 %",
    )
    for index, row in enumerate(rows):
        table.add_row(*row, end_section=index == 0)
    console.print(table)
    for reason, count in document["unmatched"].items():
        console.print(f"Not compared: {count:,} requests {_REASONS.get(reason, reason)}.")
    console.print(
        f"Intervals: estimate +- {Z_95:.2f} standard errors; the fleet row weights each "
        "segment's difference by its traffic. n/a: fewer than 2 requests in a group."
    )
