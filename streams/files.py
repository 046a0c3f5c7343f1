"""Event logs as JSON lines, plain or gzip: what `simulate --log-events` writes and replay reads.

One event per line, exactly the JSON of the events topic's values, so an
archive of the topic and a simulator log are the same format.
"""

from __future__ import annotations

import gzip
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from stopbandit.streams.codec import encode

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from pathlib import Path

    from stopbandit.streams.events import Event


def _open(path: Path, mode: str) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, mode + "b")  # type: ignore[return-value]
    return path.open(mode + "b")


@contextmanager
def event_log_writer(path: Path) -> Iterator[EventLogWriter]:
    """Open `path` (gzip if it ends in .gz) for writing events, one JSON line each."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _open(path, "w") as stream:
        yield EventLogWriter(stream)


class EventLogWriter:
    """Appends events to an open log."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.written = 0

    def write(self, event: Event) -> None:
        """Append one event."""
        self._stream.write(encode(event) + b"\n")
        self.written += 1


@dataclass(frozen=True)
class LogDamage:
    """Where a log stopped being readable: the lines before it were read."""

    path: str
    intact_lines: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: unreadable after line {self.intact_lines} ({self.reason})"


class DamagedLogError(ValueError):
    """A log cannot be read to its end (truncated gzip, not gzip at all, corrupt data)."""

    def __init__(self, damage: LogDamage) -> None:
        super().__init__(str(damage))
        self.damage = damage


def read_event_lines(
    paths: Iterable[Path], on_damage: Callable[[LogDamage], None] | None = None
) -> Iterator[tuple[str, int, bytes]]:
    """Every non-blank line of the logs, as (path, line number, raw bytes), in order.

    Lines are not decoded here: the caller runs them through `streams.codec.decode`
    like messages from the topic, so a log gets the same validation as live traffic.

    Args:
        paths: the logs, plain or gzip (by the `.gz` suffix).
        on_damage: called when a log breaks off (a copy cut short, a `.gz` that is not
            gzip); the lines before the break have been yielded and the next log is
            read. None raises `DamagedLogError` instead.

    Raises:
        DamagedLogError: a log broke off and `on_damage` is None.
    """
    for path in paths:
        number = 0
        try:
            with _open(path, "r") as stream:
                for number, line in enumerate(stream, start=1):
                    stripped = line.strip()
                    if stripped:
                        yield str(path), number, stripped
        except (EOFError, zlib.error, gzip.BadGzipFile) as error:
            damage = LogDamage(str(path), number, f"{type(error).__name__}: {error}")
            if on_damage is None:
                raise DamagedLogError(damage) from None
            on_damage(damage)
