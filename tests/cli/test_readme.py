"""The README's examples work as written: its config file loads, its commands run."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from stopbandit.controller.config import load_config

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
STOPBANDIT = str(Path(sys.executable).parent / "stopbandit")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_readme_opens_with_the_two_commands() -> None:
    """The first code block is `make demo` then `make test`, and the Makefile has both."""
    first = _blocks("sh")[0].splitlines()
    assert first[0].startswith("make demo")
    assert first[1].startswith("make test")
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.MULTILINE)
    assert re.search(r"^test:.*\n\t.*pytest", makefile, flags=re.MULTILINE)


def test_the_config_example_loads(tmp_path: Path) -> None:
    """The YAML example is a valid configuration, with the values it shows."""
    (example,) = _blocks("yaml")
    path = tmp_path / "stopbandit.yaml"
    path.write_text(example)
    config = load_config(path)
    assert config.default_arm == 0.95
    assert config.checkpoint.store == "kafka"
    assert config.http.port == 8080


def _readme_command(prefix: str) -> list[str]:
    for block in _blocks("sh"):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            if line.strip().startswith(prefix):
                return shlex.split(line.split("#")[0])
    raise AssertionError(f"no `{prefix}` command in the README")


@pytest.mark.slow
def test_the_simulate_and_replay_commands_run(tmp_path: Path) -> None:
    """`stopbandit simulate ...` as written (fewer interactions), then replay of its log."""
    command = _readme_command("stopbandit simulate")
    command[command.index("--interactions") + 1] = "3000"
    command[command.index("--log-events") + 1] = str(tmp_path / "events.jsonl.gz")
    command[0] = STOPBANDIT
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["interactions"] == 3000
    assert (tmp_path / "events.jsonl.gz").stat().st_size > 0

    replay = [STOPBANDIT, "replay", str(tmp_path / "events.jsonl.gz"), "--json"]
    replay += ["--sweep", "token_cost_per_1k=0.005:0.05:3"]
    result = subprocess.run(replay, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    names = {p["name"] for p in json.loads(result.stdout)["policies"]}
    assert {"logged", "learned", "fixed:0.95", "sweep:0.005"} <= names
