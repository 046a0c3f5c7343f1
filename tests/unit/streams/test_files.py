"""Event logs: JSON lines, plain or gzip, read back with their line numbers."""

from __future__ import annotations

import gzip
from typing import TYPE_CHECKING

import pytest

from stopbandit.streams.codec import decode
from stopbandit.streams.events import Decision, Event, Outcome
from stopbandit.streams.files import (
    DamagedLogError,
    LogDamage,
    event_log_writer,
    read_event_lines,
)

if TYPE_CHECKING:
    from pathlib import Path

EVENTS: list[Event] = [
    Decision(
        v=1,
        request_id="r1",
        ts=1.0,
        segment="math/gsm8k",
        context={"task": "gsm8k", "n": 3},
        threshold=0.95,
        probability=0.82,
        policy_version=17,
        pmf=[(0.9, 0.18), (0.95, 0.82)],
    ),
    Outcome(v=1, request_id="r1", ts=2.5, segment="math/gsm8k", em=1.0, tokens=917),
    Outcome(v=1, request_id="r2", ts=3.0, segment="é/ü", em=0.0, tokens=0, stopped_early=False),
]


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_written_events_read_back_equal(tmp_path: Path, name: str) -> None:
    """Write, read, decode: the same events, numbered from line 1."""
    path = tmp_path / "nested" / "dir" / name  # parents are created
    with event_log_writer(path) as writer:
        for event in EVENTS:
            writer.write(event)
    assert writer.written == len(EVENTS)
    lines = list(read_event_lines([path]))
    assert [(p, n) for p, n, _ in lines] == [(str(path), 1), (str(path), 2), (str(path), 3)]
    assert [decode(None, raw) for _, _, raw in lines] == EVENTS


def test_gz_suffix_means_gzip_on_disk(tmp_path: Path) -> None:
    """A .gz log is a real gzip stream that gzip.open can read."""
    path = tmp_path / "events.jsonl.gz"
    with event_log_writer(path) as writer:
        writer.write(EVENTS[1])
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(path.read_bytes()).count(b"\n") == 1


def test_plain_log_is_one_json_object_per_line(tmp_path: Path) -> None:
    """The plain log is exactly the topic's values joined by newlines."""
    path = tmp_path / "events.jsonl"
    with event_log_writer(path) as writer:
        writer.write(EVENTS[1])
    assert path.read_bytes() == (
        b'{"v":1,"request_id":"r1","ts":2.5,"segment":"math/gsm8k",'
        b'"type":"outcome","em":1.0,"tokens":917}\n'
    )


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_blank_lines_are_skipped_but_counted(tmp_path: Path, compress: bool) -> None:
    """Blank and whitespace-only lines yield nothing; line numbers stay those of the file."""
    text = b'{"a":1}\n\n   \n\t\r\n{"b":2}\r\n\n{"c":3}'
    path = tmp_path / ("log.jsonl.gz" if compress else "log.jsonl")
    path.write_bytes(gzip.compress(text) if compress else text)
    assert [(n, raw) for _, n, raw in read_event_lines([path])] == [
        (1, b'{"a":1}'),
        (5, b'{"b":2}'),
        (7, b'{"c":3}'),
    ]


def test_several_logs_are_read_in_the_order_given(tmp_path: Path) -> None:
    """Paths are read one after the other, each numbered from 1."""
    first, second = tmp_path / "b.jsonl", tmp_path / "a.jsonl.gz"
    first.write_bytes(b"one\ntwo\n")
    second.write_bytes(gzip.compress(b"three\n"))
    assert list(read_event_lines([first, second])) == [
        (str(first), 1, b"one"),
        (str(first), 2, b"two"),
        (str(second), 1, b"three"),
    ]


def test_lines_are_not_decoded_here(tmp_path: Path) -> None:
    """Invalid lines come back as raw bytes, for the codec (and the dead-letter count) to judge."""
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"not json\n\xff\xfe\n")
    assert [raw for _, _, raw in read_event_lines([path])] == [b"not json", b"\xff\xfe"]


def test_empty_log_yields_nothing(tmp_path: Path) -> None:
    """An empty file, plain or gzip, is an empty log."""
    plain, packed = tmp_path / "e.jsonl", tmp_path / "e.jsonl.gz"
    plain.write_bytes(b"")
    packed.write_bytes(gzip.compress(b""))
    assert list(read_event_lines([plain, packed])) == []


def _gzip_log(tmp_path: Path, lines: int) -> Path:
    path = tmp_path / "events.jsonl.gz"
    with event_log_writer(path) as writer:
        for i in range(lines):
            writer.write(EVENTS[1].model_copy(update={"request_id": f"r{i}"}))
    return path


def test_a_truncated_gzip_yields_what_came_before_and_reports_where(tmp_path: Path) -> None:
    """A copy cut short: the intact lines, then the damage with the line it broke after."""
    path = _gzip_log(tmp_path, 5000)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    damages: list[LogDamage] = []
    lines = list(read_event_lines([path], damages.append))
    assert 0 < len(lines) < 5000
    assert [n for _, n, _ in lines] == list(range(1, len(lines) + 1))
    assert damages == [LogDamage(str(path), len(lines), damages[0].reason)]
    assert damages[0].reason.startswith("EOFError")
    with pytest.raises(DamagedLogError, match=rf"unreadable after line {len(lines)} \(EOFError"):
        list(read_event_lines([path]))


def test_a_gz_that_is_not_gzip_is_named_and_the_next_log_still_read(tmp_path: Path) -> None:
    """A plain log mislabelled .gz breaks at line 0; the logs after it are read."""
    mislabelled = tmp_path / "plain.jsonl.gz"
    mislabelled.write_bytes(b'{"v":1}\n')
    good = _gzip_log(tmp_path, 3)
    damages: list[LogDamage] = []
    lines = list(read_event_lines([mislabelled, good], damages.append))
    assert [(p, n) for p, n, _ in lines] == [(str(good), 1), (str(good), 2), (str(good), 3)]
    assert len(damages) == 1
    assert (damages[0].path, damages[0].intact_lines) == (str(mislabelled), 0)
    assert "BadGzipFile" in damages[0].reason
    with pytest.raises(DamagedLogError, match=r"plain\.jsonl\.gz: unreadable after line 0"):
        list(read_event_lines([mislabelled, good]))
