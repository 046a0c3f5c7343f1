"""`stopbandit simulate` as an operator runs it on day 1: today's threshold keeps the traffic.

With the shipped defaults, starting from --default-arm 0.95 on mixed-reasoning,
at least 80 % of the first 2,000 logged decisions are at 0.95 (issue 13), and
the --json summary reports the realised exploration share. With policies
published every 50 requests (nearly all 2,000 decisions drawn from policies,
which by then have the evidence to move their greedy arms off 0.95), the
realised share off the greedy arm stays within the cap.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stopbandit.policies.exploration import DEFAULT_MAX_EXPLORE

STOPBANDIT = str(Path(sys.executable).with_name("stopbandit"))
FIRST = 2_000


def first_thresholds(log: Path, count: int) -> list[float]:
    """Thresholds of the first `count` decisions in a --log-events file."""
    thresholds = []
    with log.open(encoding="utf-8") as lines:
        for line in lines:
            event = json.loads(line)
            if event.get("type") == "decision":
                thresholds.append(float(event["threshold"]))
                if len(thresholds) == count:
                    break
    return thresholds


def simulate(log: Path, publish_every: int) -> dict[str, object]:
    """Run `stopbandit simulate` from 0.95 for the first decisions; its --json report."""
    result = subprocess.run(
        [
            STOPBANDIT,
            "simulate",
            "--default-arm",
            "0.95",
            "--interactions",
            str(FIRST),
            "--publish-every",
            str(publish_every),
            "--log-events",
            str(log),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_the_first_decisions_stay_at_the_default_arm(tmp_path: Path) -> None:
    """>= 80 % of the first 2,000 decisions at 0.95; the summary's exploration share agrees."""
    log = tmp_path / "events.jsonl"
    online = simulate(log, 1000)["online"]
    thresholds = first_thresholds(log, FIRST)
    assert len(thresholds) == FIRST
    at_default = sum(t == 0.95 for t in thresholds) / FIRST
    assert at_default >= 0.8, f"{at_default:.3f} of the first {FIRST} decisions at 0.95"
    # Off the greedy arm, which at the safe start is the default: the two figures agree.
    assert isinstance(online, dict)
    assert online["exploration_share"] == pytest.approx(1.0 - at_default, abs=1e-9)


def test_the_realised_exploration_share_stays_within_the_cap(tmp_path: Path) -> None:
    """Policies every 50 requests: off-greedy draws <= max_explore (3 sd of sampling noise)."""
    online = simulate(tmp_path / "events.jsonl", 50)["online"]
    assert isinstance(online, dict)
    noise = 3.0 * (DEFAULT_MAX_EXPLORE * (1 - DEFAULT_MAX_EXPLORE) / FIRST) ** 0.5
    assert 0.0 < online["exploration_share"] <= DEFAULT_MAX_EXPLORE + noise
