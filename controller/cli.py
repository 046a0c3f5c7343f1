"""`stopbandit`: the command line. Each subcommand lives in controller/commands/."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib.metadata import version

from stopbandit.controller.extras import missing_extra_message

try:
    from stopbandit.controller.commands import UsageError
    from stopbandit.controller.config import ConfigError
except ModuleNotFoundError as missing:
    # A serving node's install (`pip install stopbandit`) lacks the controller's
    # dependencies: one line naming the extra, not a traceback.
    if (message := missing_extra_message(missing)) is None:
        raise
    sys.exit(message)

# Subcommand modules, in the order `--help` lists them.
COMMANDS = ("simulate", "replay", "report", "run", "checkpoint", "fleet", "demo")

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # the shell's 128 + SIGINT


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="stopbandit",
        description="Online contextual-bandit controller for LLM early-stopping thresholds.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('stopbandit')}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"stopbandit.controller.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the subcommand; the exit code is the return value."""
    try:
        # Inside the try: the subcommands import their extras' modules (numpy, the broker).
        args = build_parser().parse_args(argv)
        return int(args.handler(args))
    except ModuleNotFoundError as error:
        return _missing_extra(error)
    except ConfigError as error:
        print(f"stopbandit: {error}", file=sys.stderr)  # noqa: T201 - the CLI's own error line
        return EXIT_USAGE
    except UsageError as error:
        print(f"stopbandit: {error}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    except KeyboardInterrupt:
        # Commands that can stop cleanly handle SIGINT themselves; the rest end here.
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader (`| head`) left: no traceback, and no second error when Python
        # flushes stdout at exit (https://docs.python.org/3/library/signal.html#note-on-sigpipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _missing_extra(error: ModuleNotFoundError) -> int:
    """Print which extra to install for a missing module; re-raise if none brings it."""
    message = missing_extra_message(error)
    if message is None:
        raise error
    print(message, file=sys.stderr)  # noqa: T201
    return 1


if __name__ == "__main__":
    sys.exit(main())
