"""The command line behaves as Unix tools do: --version, pipes, exit codes, env-var typos."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

STOPBANDIT = str(Path(sys.executable).with_name("stopbandit"))


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOPBANDIT_")}
    return env | (extra or {})


def test_version_prints_the_installed_version() -> None:
    """`stopbandit --version` prints the package's version and exits 0."""
    result = subprocess.run(
        [STOPBANDIT, "--version"], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"stopbandit {version('stopbandit')}"


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path: Path) -> None:
    """`stopbandit simulate --json | head -c 10`: the pipe closes early, no BrokenPipe traceback."""
    result = subprocess.run(  # noqa: S602 - the shell's pipe is the point
        f"{STOPBANDIT} simulate --interactions 3000 --json | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=tmp_path,
        env=_clean_env(),
    )
    assert len(result.stdout) == 10
    assert "Traceback" not in result.stderr
    assert "BrokenPipe" not in result.stderr


def test_an_environment_typo_fails_the_start_naming_the_setting(tmp_path: Path) -> None:
    """A misspelt section in an env var is exit 2 with the nearest real name, not ignored."""
    result = subprocess.run(
        [STOPBANDIT, "simulate", "--interactions", "10"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=tmp_path,
        env=_clean_env({"STOPBANDIT_REWARDS__TOKEN_COST_PER_1K": "0.01"}),
    )
    assert result.returncode == 2
    assert "STOPBANDIT_REWARDS__TOKEN_COST_PER_1K" in result.stderr
    assert "did you mean STOPBANDIT_REWARD__TOKEN_COST_PER_1K" in result.stderr
    assert "Traceback" not in result.stderr
