"""Replay's sources: range bounds of the events topic, and event log files."""

from __future__ import annotations

import pytest

from stopbandit.controller.replay.sources import RangeBound, file_events


@pytest.mark.parametrize(
    ("text", "bound"),
    [
        ("42", RangeBound(offset=42)),
        ("2025-12-01T00:00:00Z", RangeBound(timestamp_ms=1_764_547_200_000)),
        ("2025-12-01T00:00:00", RangeBound(timestamp_ms=1_764_547_200_000)),
    ],
)
def test_range_bounds_are_offsets_or_iso_times(text, bound):
    """An integer is an offset; an ISO time without zone is UTC."""
    assert RangeBound.parse(text) == bound


@pytest.mark.parametrize("text", ["-1", "yesterday"])
def test_bad_range_bounds_are_rejected(text):
    """Negative offsets and unparseable times are errors."""
    with pytest.raises(ValueError, match=r"offset|ISO"):
        RangeBound.parse(text)


def test_file_events_read_plain_and_gzip_logs(tmp_path, lines):
    """Lines of plain and .gz logs become raw events without key, numbered per file."""
    plain = tmp_path / "a.jsonl"
    plain.write_text("\n".join(lines[:2]) + "\n\n")
    events = list(file_events([plain]))
    assert [(e.position, e.key) for e in events] == [(1, None), (2, None)]
