"""`stopbandit report` as a user runs it: a simulated log with a control group in, figures out."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

STOPBANDIT = str(Path(sys.executable).parent / "stopbandit")
INTERACTIONS = 6000
FRACTION = 0.1


def stopbandit(*args: object) -> subprocess.CompletedProcess[str]:
    """Run the command (a 160-column console); return the completed process."""
    return subprocess.run(
        [STOPBANDIT, *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "160"},
    )


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A simulate run with a 10 % control group: its event log and its --json report."""
    log = tmp_path_factory.mktemp("report") / "events.jsonl.gz"
    result = stopbandit(
        "simulate",
        "--interactions",
        INTERACTIONS,
        "--seed",
        5,
        "--control-fraction",
        FRACTION,
        "--log-events",
        log,
        "--json",
    )
    assert result.returncode == 0, result.stderr
    return log, json.loads(result.stdout)


def test_report_of_a_log_gives_what_simulate_measured(simulated: tuple[Path, dict[str, Any]]):
    """The log read back, joined and regrouped from request_ids, gives simulate's figures."""
    log, report = simulated
    result = stopbandit("report", log, "--control-fraction", FRACTION, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["fleet"] == report["control"]["fleet"]
    assert document["segments"] == report["control"]["segments"]
    assert document["input"]["interactions"] == INTERACTIONS
    requests = document["fleet"]["requests"]
    assert abs(requests["control"] / INTERACTIONS - FRACTION) < 0.02
    # The first publish comes after 1000 interactions: those were served by the fallback.
    assert document["unmatched"] == {"fallback": 1000}


def test_report_prints_a_table_a_person_can_read(simulated: tuple[Path, dict[str, Any]]):
    """The human form names the control group, the fleet row and every figure's interval."""
    log, _ = simulated
    result = stopbandit("report", log, "--control-fraction", FRACTION, "--top", 2)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "10.0% of requests served at arm 1" in out
    assert "each pair: policies / control" in out
    assert "fleet" in out
    assert "(other segments)" in out
    assert "Not compared: 1,000 requests the node knew no policy" in out


def test_report_without_a_control_fraction_says_so(simulated: tuple[Path, dict[str, Any]]):
    """With the default config (fraction 0), every policy request is controlled and it says why."""
    log, _ = simulated
    result = stopbandit("report", log)
    assert result.returncode == 0, result.stderr
    assert "No control group" in result.stdout


def test_a_damaged_log_is_reported_up_to_the_break(
    simulated: tuple[Path, dict[str, Any]], tmp_path: Path
):
    """A truncated .gz: a warning naming the file, the lines before it reported."""
    log, _ = simulated
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(log.read_bytes()[: len(log.read_bytes()) // 2])
    result = stopbandit("report", cut, "--control-fraction", FRACTION, "--json")
    assert result.returncode == 0, result.stderr
    assert str(cut) in result.stderr
    document = json.loads(result.stdout)
    assert 0 < document["input"]["interactions"] < INTERACTIONS
    assert document["input"]["damaged"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give event logs"),
        (("missing.jsonl",), "no such log"),
        (("LOG", "--control-arm", "0.42"), "--control-arm: 0.42 is not one of the arms"),
        (("LOG", "--control-fraction", "0.9"), "--control-fraction: must be in [0, 0.5]"),
    ],
)
def test_bad_input_is_a_usage_error(
    simulated: tuple[Path, dict[str, Any]], args: tuple[str, ...], message: str
):
    """Exit code 2 and one line naming the problem."""
    log, _ = simulated
    result = stopbandit("report", *[str(log) if a == "LOG" else a for a in args])
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_lines_are_counted_not_fatal(tmp_path: Path):
    """A line that is not an event is counted by kind; the report goes on."""
    log = tmp_path / "bad.jsonl.gz"
    with gzip.open(log, "wt") as stream:
        stream.write("{not json\n")
    result = stopbandit("report", log, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert sum(document["input"]["invalid"].values()) == 1
