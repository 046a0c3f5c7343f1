"""Logs: JSON lines for a collector, readable lines on a terminal."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING

import pytest
import structlog

from stopbandit.controller.logs import configure_logging

if TYPE_CHECKING:
    from collections.abc import Iterator


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _log_to(stream: io.StringIO, monkeypatch: pytest.MonkeyPatch, log_format: str) -> str:
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(log_format, "info")
    structlog.get_logger("t").info("policy.published", segment="math", version=7)
    return stream.getvalue()


def test_auto_writes_json_lines_when_stderr_is_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pod's stderr is a pipe: one JSON object per line."""
    line = _log_to(io.StringIO(), monkeypatch, "auto")
    event = json.loads(line)
    assert (event["event"], event["segment"], event["version"]) == ("policy.published", "math", 7)


def test_auto_writes_readable_lines_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the same event is a key=value line, not JSON."""
    line = _log_to(_Terminal(), monkeypatch, "auto")
    assert "policy.published" in line
    assert "segment" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


@pytest.mark.parametrize(("stream", "log_format"), [(_Terminal, "json"), (io.StringIO, "console")])
def test_an_explicit_format_wins(
    monkeypatch: pytest.MonkeyPatch, stream: type[io.StringIO], log_format: str
) -> None:
    """`log.format: json` on a terminal is JSON; `console` into a pipe is readable."""
    line = _log_to(stream(), monkeypatch, log_format)
    is_json = line.lstrip().startswith("{")
    assert is_json == (log_format == "json")
