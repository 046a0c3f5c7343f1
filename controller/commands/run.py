"""`stopbandit run`: the controller daemon (consume events, learn, publish policies)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from kafka.errors import KafkaError

from stopbandit.controller.commands import UsageError
from stopbandit.controller.config import load_config
from stopbandit.controller.daemon.http import HttpServer
from stopbandit.controller.daemon.loop import Daemon
from stopbandit.controller.logs import configure_logging
from stopbandit.streams.kafka import MissingTopicsError

if TYPE_CHECKING:
    import argparse

log = structlog.get_logger(__name__)

# The daemon stopped, but its final checkpoint did not cover every partition: their
# events since the previous checkpoint are consumed (and learned once) again at the next start.
EXIT_CHECKPOINT_FAILED = 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `run` subcommand."""
    parser = subparsers.add_parser(
        "run",
        help="run the controller daemon against Kafka",
        description=(
            "Consume decision and outcome events, join and learn per partition, publish "
            "policies, checkpoint; serve /metrics, /healthz, /readyz, /policies and /savings."
        ),
    )
    parser.add_argument("--config", type=Path, help="controller config YAML")
    parser.add_argument(
        "--max-events", type=int, help="stop after this many messages (tests, benchmarks)"
    )
    parser.add_argument(
        "--idle-timeout-s",
        type=float,
        help="stop after this many seconds without a message (tests, benchmarks)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM/SIGINT (or the test limits).

    Exits 0 after a clean stop, `EXIT_CHECKPOINT_FAILED` when the final checkpoint failed.
    """
    config = load_config(args.config)
    configure_logging(config.log.format, config.log.level)
    log.info("config.loaded", config=config.masked())
    daemon = Daemon(config)
    daemon.install_signal_handlers()
    try:
        server = HttpServer(daemon, config.http.host, config.http.port)
    except OSError as error:
        raise UsageError(
            f"http: cannot listen on {config.http.host}:{config.http.port} ({error})"
        ) from None
    server.start()
    try:
        daemon.open()
        daemon.run(max_events=args.max_events, idle_timeout_s=args.idle_timeout_s)
    except MissingTopicsError as error:
        raise UsageError(str(error)) from None
    except KafkaError as error:
        if not daemon.stopping:
            raise
        # Stopped while the broker was still unreachable: nothing was consumed, nothing lost.
        log.warning("daemon.stopped_before_connecting", error=repr(error))
        return 0
    finally:
        server.stop()
    return 0 if daemon.final_checkpoint_written else EXIT_CHECKPOINT_FAILED
