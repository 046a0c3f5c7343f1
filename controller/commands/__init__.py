"""One module per `stopbandit` subcommand, each with `register(subparsers)`."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


class UsageError(Exception):
    """A command's input cannot be used (missing file, invalid scenario); exit code 2."""


class StopSignals:
    """SIGINT and SIGTERM end a long command cleanly, and its exit code says which one did.

    The handler only calls `stop` (which must be safe from a signal handler: set
    flags); the command then finishes its summary and returns `exit_code`.
    """

    def __init__(self, stop: Callable[[], None]) -> None:
        self.received: list[int] = []
        self._stop = stop
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        self.received.append(signum)
        self._stop()

    @property
    def exit_code(self) -> int:
        """0 if no signal came; otherwise the shell's 128 + signal number (130 for Ctrl-C)."""
        return 128 + self.received[0] if self.received else 0
