"""`stopbandit`: the command line. Each subcommand lives in controller/commands/."""

from __future__ import annotations

import argparse
import importlib
import sys

from stopbandit.controller.commands import UsageError
from stopbandit.controller.config import ConfigError

# Subcommand modules, in the order `--help` lists them.
COMMANDS = ("simulate", "replay", "run", "fleet", "demo")

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="stopbandit",
        description="Online contextual-bandit controller for LLM early-stopping thresholds.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"stopbandit.controller.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the subcommand; the exit code is the return value."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as error:
        print(f"stopbandit: {error}", file=sys.stderr)  # noqa: T201 - the CLI's own error line
        return EXIT_USAGE
    except UsageError as error:
        print(f"stopbandit: {error}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
