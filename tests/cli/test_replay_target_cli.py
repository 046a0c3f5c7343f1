"""`stopbandit replay --target`: λ calibrated on a log, its arms printed and evaluated."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

STOPBANDIT = str(Path(sys.executable).parent / "stopbandit")


def stopbandit(*args):
    """Run the command; return the completed process (never raises on exit codes)."""
    return subprocess.run(
        [STOPBANDIT, *map(str, args)], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    """A 3,000-interaction simulated log of the default scenario."""
    path = tmp_path_factory.mktemp("target") / "events.jsonl.gz"
    result = stopbandit("simulate", "--interactions", 3000, "--seed", 2, "--log-events", path)
    assert result.returncode == 0, result.stderr
    return path


def test_json_has_the_calibration_and_its_policy(log):
    """The document's target entry gives λ and arms; the policy is evaluated with the others."""
    result = stopbandit("replay", log, "--target", "token_reduction=0.45", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    target = document["target"]
    assert target["metric"] == "token_reduction"
    assert target["lambda"] > 0
    assert len(target["greedy"]) == 6
    assert "target:token_reduction=45" in {p["name"] for p in document["policies"]}


def test_table_prints_lambda_and_arms(log):
    """Without --json the calibration follows the tables, one line per segment."""
    result = stopbandit("replay", log, "--target", "max_em_drop_pts=1")
    assert result.returncode == 0, result.stderr
    assert "token_cost_per_1k λ =" in result.stdout
    assert result.stdout.count("greedy") >= 6


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--target", "tokens=0.3"], "expected token_reduction=X"),
        (["--target", "token_reduction=2"], "less than 1"),
        (["--target", "token_reduction=0.3", "--no-learned"], "needs learning"),
    ],
)
def test_bad_targets_are_usage_errors(log, args, reason):
    """A bad --target stops with exit 2 and the reason."""
    result = stopbandit("replay", log, *args)
    assert result.returncode == 2
    assert reason in result.stderr


def test_report_has_the_target_section(log, tmp_path):
    """--report adds the calibration's plot and λ to the HTML page."""
    result = stopbandit("replay", log, "--target", "token_reduction=0.45", "--report", tmp_path)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "index.html").read_text()
    assert "<h2>target mode</h2>" in page
    assert "token_cost_per_1k λ =" in page
    assert (tmp_path / "target.png").stat().st_size > 0
