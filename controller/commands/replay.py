"""`stopbandit replay`: what other policies and reward weights would have done on logged events."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from kafka.errors import KafkaError
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from stopbandit.controller.commands import UsageError
from stopbandit.controller.config import load_config
from stopbandit.controller.logs import configure_logging
from stopbandit.controller.ope.registry import ESTIMATORS
from stopbandit.controller.replay.calibrate import (
    Calibration,
    add_target_argument,
    calibrate_log,
    summary_lines,
)
from stopbandit.controller.replay.document import build_document, lead_and_others, traced
from stopbandit.controller.replay.evaluate import DEFAULT_FOLDS, evaluate
from stopbandit.controller.replay.feed import DEFAULT_PUBLISH_EVERY, replay
from stopbandit.controller.replay.sources import RangeBound, file_events, read_topic_range
from stopbandit.controller.replay.targets import (
    Sweep,
    fixed_targets,
    learned_target,
    logged_target,
    sweep_targets,
)
from stopbandit.controller.replay.warm_start import export_checkpoints
from stopbandit.streams.arms import arm_label
from stopbandit.streams.kafka import client_settings

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterable, Iterator

    from stopbandit.controller.config import StopbanditConfig
    from stopbandit.controller.replay.feed import RawEvent, ReplayLog
    from stopbandit.controller.replay.sources import TopicRange
    from stopbandit.controller.replay.targets import Target
    from stopbandit.streams.files import LogDamage

_PROGRESS_EVERY = 5000


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `replay` subcommand."""
    parser = subparsers.add_parser(
        "replay",
        help="evaluate policies and reward weights off-policy on logged events",
        description=(
            "Replay decision/outcome events (JSON-lines logs, or a range of the events topic) "
            "through the controller's join and learners, and estimate with "
            f"{_listed([e.label for e in ESTIMATORS.for_log(traced=False)])} "
            "what the logged policy, each fixed threshold, the learned policy and a sweep of "
            "reward weights would have earned. Where outcomes carry counterfactual traces "
            "(SCHEMA 1.1: the request's outcome at lower arms, seen on its own run), "
            "playing an arm also reveals every arm below it: replay then adds "
            f"{_listed([e.label for e in ESTIMATORS if e.needs_traces])}, which read every "
            "arm a request was observed at (a fixed threshold's direct estimate is its mean "
            "over the requests that observed it, per segment, weighted by traffic), leads "
            f"with {ESTIMATORS.lead(traced=True).label}, and says for each estimate on how "
            "many requests the target's arm was observed. Traces with unknown arms or arms "
            "not below the played one are dropped and counted by reason."
        ),
    )
    parser.add_argument("logs", nargs="*", type=Path, metavar="LOG", help="event logs (.gz ok)")
    parser.add_argument("--config", type=Path, help="controller config YAML (arms, reward, ...)")
    parser.add_argument("--json", action="store_true", help="print everything as one JSON object")
    parser.add_argument("--report", type=Path, metavar="DIR", help="write an HTML report + PNGs")
    parser.add_argument(
        "--sweep",
        metavar="FIELD=START:STOP:POINTS",
        help="sweep a reward weight, e.g. token_cost_per_1k=0.005:0.05:10",
    )
    add_target_argument(parser)
    parser.add_argument(
        "--export-checkpoint", type=Path, metavar="DIR", help="write warm-start checkpoints"
    )
    parser.add_argument(
        "--publish-every",
        type=int,
        default=DEFAULT_PUBLISH_EVERY,
        help="rebuild the learned policy every N interactions (as simulate --publish-every)",
    )
    parser.add_argument(
        "--no-learned",
        action="store_true",
        help="skip learning: logged and fixed policies only (faster; no sweep, no checkpoint)",
    )
    parser.add_argument("--folds", type=int, default=DEFAULT_FOLDS, help="DR cross-fitting folds")
    parser.add_argument("--seed", type=int, default=0, help="seed of the DR fold assignment")
    parser.add_argument("--confidence", type=float, default=0.95, help="interval coverage")
    parser.add_argument(
        "--damaged-log",
        choices=("warn", "refuse"),
        default="warn",
        help="a log cut short or not gzip: replay what came before it (warn) or stop (refuse)",
    )
    parser.add_argument("--bootstrap", metavar="HOST:PORT", help="read the events topic instead")
    parser.add_argument("--topic", help="events topic (with --bootstrap)")
    parser.add_argument("--from", dest="start", metavar="X", help="first offset or ISO time")
    parser.add_argument("--to", dest="end", metavar="Y", help="offset or ISO time to stop before")
    parser.set_defaults(handler=run)


def _listed(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _check(args: argparse.Namespace) -> Sweep | None:
    if bool(args.logs) == bool(args.bootstrap):
        raise UsageError("give event logs, or --bootstrap and --topic, not both")
    if args.bootstrap and not args.topic:
        raise UsageError("--bootstrap needs --topic")
    if not args.bootstrap and (args.topic or args.start or args.end):
        raise UsageError("--topic, --from and --to need --bootstrap")
    if args.publish_every < 1 or args.folds < 2:  # noqa: PLR2004
        raise UsageError("--publish-every must be >= 1 and --folds >= 2")
    if not 0.0 < args.confidence < 1.0:
        raise UsageError("--confidence must be in (0, 1)")
    if args.no_learned and (args.sweep or args.export_checkpoint):
        raise UsageError("--sweep and --export-checkpoint need learning (drop --no-learned)")
    for path in args.logs:
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
    try:
        return Sweep.parse(args.sweep) if args.sweep else None
    except ValueError as error:
        raise UsageError(str(error)) from None


def _topic_range(args: argparse.Namespace, config: StopbanditConfig) -> TopicRange:
    try:
        start = RangeBound.parse(args.start) if args.start else None
        end = RangeBound.parse(args.end) if args.end else None
    except ValueError as error:
        raise UsageError(f"--from/--to: {error}") from None
    # Security settings come from the config's kafka section, as for the daemon.
    settings = {k: v for k, v in client_settings(config.kafka).items() if k != "bootstrap_servers"}
    try:
        return read_topic_range(
            [args.bootstrap], args.topic, start, end, consumer_settings=settings
        )
    except (KafkaError, ValueError, TimeoutError) as error:
        raise UsageError(f"--bootstrap {args.bootstrap} --topic {args.topic}: {error}") from None


def run(args: argparse.Namespace) -> int:
    """Replay, evaluate, and print (or write) the results."""
    sweep = _check(args)
    config = load_config(args.config)
    # Logs go to stderr, so that --json output on stdout stays one clean document.
    configure_logging(config.log.format, config.log.level)
    damaged: list[LogDamage] = []

    def warn(damage: LogDamage) -> None:
        damaged.append(damage)
        print(  # noqa: T201 - the CLI's own warning line, on stderr
            f"stopbandit: warning: {damage}; replaying the lines before it"
            " (--damaged-log refuse stops instead)",
            file=sys.stderr,
        )

    partition_of: dict[str, int] | None = None
    offsets: dict[int, int] | None = None
    if args.bootstrap:
        topic_range = _topic_range(args, config)
        events: Iterable[RawEvent] = topic_range.events
        partition_of, offsets = topic_range.partition_of, topic_range.next_offsets
        sources = [f"{args.bootstrap}/{args.topic}"]
    else:
        events = file_events(args.logs, None if args.damaged_log == "refuse" else warn)
        sources = [str(p) for p in args.logs]
    with _progress(sys.stderr.isatty()) as tick:
        try:
            log = replay(
                _counted(events, tick),
                config,
                learn=not args.no_learned,
                publish_every=args.publish_every,
            )
        except ValueError as error:
            raise UsageError(str(error)) from None
    targets = [logged_target(), *fixed_targets(log)]
    if log.core is not None:
        targets.append(learned_target(log))
        if sweep is not None:
            targets.extend(sweep_targets(log, sweep))
    calibration = _calibrated(args, log, targets)
    evaluation = evaluate(
        log,
        targets,
        config.reward,
        n_folds=args.folds,
        seed=args.seed,
        confidence=args.confidence,
        settings=config.replay,
    )
    document = build_document(
        log,
        evaluation,
        targets,
        config.reward,
        sources=sources,
        publish_every=args.publish_every,
        folds=args.folds,
        fold_seed=args.seed,
        confidence=args.confidence,
        sweep=sweep,
        settings=config.replay,
        guardrail=config.guardrail,
    )
    if damaged:
        document["input"]["damaged"] = [vars(damage) for damage in damaged]
    document["target"] = calibration.to_json() if calibration is not None else None
    if args.export_checkpoint and log.core is not None:
        files = export_checkpoints(
            log.core,
            args.export_checkpoint,
            written_at=time.time(),
            watermark_s=log.watermark_s,
            partition_of=partition_of,
            offsets=offsets,
            topic=args.topic,
        )
        document["checkpoint"] = {
            "files": [str(f) for f in files],
            "format": "controller.daemon.checkpoint_stores v1",
        }
    if args.report:
        from stopbandit.controller.replay.report import write_report  # noqa: PLC0415 - matplotlib is slow to import

        write_report(document, args.report)
    if args.json:
        json.dump(document, sys.stdout, sort_keys=True, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print_summary(document)
        _print_target(calibration)
    return 0


def _calibrated(
    args: argparse.Namespace, log: ReplayLog, targets: list[Target]
) -> Calibration | None:
    """`--target`: the calibrated λ (replay/calibrate.py); its policy joins the targets."""
    if not args.target:
        return None
    try:
        calibration = calibrate_log(log, args.target)
    except ValueError as error:
        raise UsageError(str(error)) from None
    targets.append(calibration.as_target(log))
    return calibration


class _Progress:
    """A rich progress line on a terminal; nothing otherwise."""

    def __init__(self, enabled: bool) -> None:
        self._bar = (
            Progress(
                SpinnerColumn(),
                TextColumn("replaying {task.completed:,} events"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            if enabled
            else None
        )
        self._task = self._bar.add_task("replay", total=None) if self._bar else None

    def __enter__(self) -> Self:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __call__(self, count: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=count)


def _progress(enabled: bool) -> _Progress:
    return _Progress(enabled)


def _counted(events: Iterable[RawEvent], tick: _Progress) -> Iterator[RawEvent]:
    count = 0
    for event in events:
        yield event
        count += 1
        if count % _PROGRESS_EVERY == 0:
            tick(count)
    tick(count)


def _interval(policy: dict[str, Any], key: str, digits: int) -> str:
    prefix = "" if key == "reward" else f"{key}_"
    value, low, high = policy[key], policy[f"{prefix}ci_low"], policy[f"{prefix}ci_high"]
    if value is None:
        return "n/a"
    if low is None or high is None:
        return f"{value:.{digits}f}"
    if policy.get("interval") == "bounds":  # partially identified: the bounds, no point
        return f"[{low:.{digits}f}, {high:.{digits}f}]"
    return f"{value:.{digits}f} ± {(high - low) / 2:.{digits}f}"


def print_summary(document: dict[str, Any]) -> None:
    """Tables for a terminal: every policy overall, then the segments.

    Each policy's row holds the leading estimator's figures (DR; graph DR on a
    log with traces) and the other estimators' reward, in registration order;
    with traces, `obs.` is the share of requests at which the policy's arm was
    observed, and for a fixed threshold its count of direct observations.
    """
    console = Console()
    print_recommendation(console, document)
    source = document["input"]
    invalid = sum(source["invalid"].values())
    console.print(
        f"[bold]replay[/bold]: {source['events']:,} events, {source['interactions']:,} "
        f"interactions, {invalid:,} invalid, {len(document['segments'])} segments; "
        f"reward = {document['settings']['reward']['em_weight']:g}·EM - "
        f"{document['settings']['reward']['token_cost_per_1k']:g}·tokens/1000"
    )
    by_name: dict[str, dict[str, dict[str, Any]]] = {}
    for policy in document["policies"]:
        by_name.setdefault(policy["name"], {})[policy["estimator"]] = policy
    primary, others = lead_and_others(document)
    with_traces = traced(document)
    table = Table(
        "policy",
        f"reward {primary.label} ± CI",
        *(e.label for e in others),
        "EM",
        "tokens",
        "ESS",
        "supp.",
        *(("obs.",) if with_traces else ()),
    )
    notes: list[str] = []
    for name, estimates in by_name.items():
        lead = estimates[primary.name]
        flag = " [yellow]![/yellow]" if lead["warnings"] else ""
        table.add_row(
            f"{name}{flag}",
            _interval(lead, "reward", 3),
            *(_middle(estimates[e.name], "reward", 3) for e in others),
            _middle(lead, "em", 3),
            _middle(lead, "tokens", 0),
            _fmt(lead["ess"], 0),
            "?" if lead["support"] is None else f"{lead['support']:.0%}",
            *((_observed(lead),) if with_traces else ()),
        )
        notes.extend(_ranked_notes(name, lead, _shown(document)))
    console.print(table)
    if any(p.get("interval") == "bounds" for p in document["policies"]):
        console.print(
            "[bracketed] figures: bounds; ~: the middle of bounds, not an estimate", markup=False
        )
    for note in notes:
        console.print(f"[yellow]![/yellow] {note}", highlight=False)
    learned = document["learned"]
    if learned is not None:
        # Arms above 1 can only be token budgets: those read as integers.
        budgets = max(document["settings"]["arms"], default=0.0) > 1.0
        segments = Table(
            "segment", "interactions", f"learned greedy {'budget' if budgets else 'threshold'}"
        )
        for segment, entry in document["segments"].items():
            greedy = learned["greedy"].get(segment, "")
            shown = arm_label(greedy) if budgets and greedy != "" else f"{greedy}"
            segments.add_row(segment, f"{entry['n']:,}", shown)
        console.print(segments)
    if document["checkpoint"] is not None:
        console.print(f"warm-start checkpoints: {', '.join(document['checkpoint']['files'])}")


def _observed(policy: dict[str, Any]) -> str:
    observed = policy["observed"]
    if policy["kind"] != "fixed":
        return f"{observed['share']:.0%}"
    return f"{observed['share']:.0%} ({observed['n']:,.0f})"


def _middle(policy: dict[str, Any], key: str, digits: int) -> str:
    # A bounded estimate's value is the middle of its bounds: marked, never read as a point.
    shown = _fmt(policy[key], digits)
    return f"~{shown}" if policy.get("interval") == "bounds" and policy[key] is not None else shown


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _print_target(calibration: Calibration | None) -> None:
    console = Console()
    for line in summary_lines(calibration) if calibration is not None else []:
        console.print(line, highlight=False)


def _shown(document: dict[str, Any]) -> int:
    return int(document["settings"].get("replay", {}).get("warnings_shown", 3))


def _ranked_notes(name: str, policy: dict[str, Any], limit: int) -> list[str]:
    # The warnings come ranked (largest share of the target's mass first): the first few,
    # then how many more the JSON document holds.
    warnings = policy["warnings"]
    notes = [f"{name}: {warning}" for warning in warnings[:limit]]
    if len(warnings) > limit:
        notes.append(f"{name}: {len(warnings) - limit} more warnings (--json lists them all)")
    return notes


def _recommended(found: dict[str, Any]) -> str:
    if found["policy"] is None:
        return str(found["reason"])
    kind = "bounds" if found["interval"] == "bounds" else "interval"

    def triple(key: str, digits: int) -> str:
        value, low, high = found[key]
        if value is None:
            return "n/a"
        return f"{value:,.{digits}f} [{low:,.{digits}f}, {high:,.{digits}f}]"

    return (
        f"[bold]{found['policy']}[/bold]: reward {triple('reward', 3)}, EM {triple('em', 3)}, "
        f"tokens {triple('tokens', 0)} ({kind}, {found['estimator']}); {found['reason']}"
    )


def print_recommendation(console: Console, document: dict[str, Any]) -> None:
    """The opening lines: what to deploy, and what each sweep point would deploy."""
    found = document.get("recommendation")
    if found is None:
        return
    console.print(f"[bold]recommendation[/bold]: {_recommended(found)}", highlight=False)
    for point in document.get("sweep_recommendations", []):
        console.print(f"  at {point['label']}: {_recommended(point)}", highlight=False)
