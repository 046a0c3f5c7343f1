"""`stopbandit simulate --config <bad>`: exit code 2 and one line naming the field, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

STOPBANDIT = Path(sys.executable).parent / "stopbandit"
EXIT_USAGE = 2


def run_simulate(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed command as a user would, with only `env` added to a clean environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STOPBANDIT_")}
    return subprocess.run(
        [str(STOPBANDIT), "simulate", "--config", str(config), "--interactions", "10"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=clean | env,
    )


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param("reward:\n  token_cost_per_1k: -0.02\n", "reward.token_cost_per_1k", id="neg"),
        pytest.param("reward:\n  em_weigth: 1.0\n", "reward.em_weigth", id="unknown key"),
        pytest.param("log:\n  format: xml\n", "log.format", id="bad enum"),
        pytest.param("knob: token_budget\narms: [0.5, 1024]\n", "arms.0", id="knob rule"),
        pytest.param("reward: {em_weight: [1\n  x: 2\n", "bad.yaml", id="YAML syntax"),
        pytest.param("- 1\n- 2\n", "bad.yaml", id="not a mapping"),
    ],
)
def test_bad_config_exits_2_with_one_line(tmp_path: Path, text: str, field: str) -> None:
    """The error is a single stderr line that names the field at fault."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = run_simulate(path)
    assert result.returncode == EXIT_USAGE, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("stopbandit: invalid configuration:")
    assert field in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    """A config path that does not exist is named in the one error line."""
    path = tmp_path / "absent.yaml"
    result = run_simulate(path)
    assert result.returncode == EXIT_USAGE
    assert str(path) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_env_value_exits_2(tmp_path: Path) -> None:
    """An environment override is validated like the file, and named the same way."""
    path = tmp_path / "good.yaml"
    path.write_text("reward:\n  em_weight: 1.0\n")
    result = run_simulate(path, STOPBANDIT_ARMS="0.5,1.0")
    assert result.returncode == EXIT_USAGE, result.stderr
    assert "arms" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
