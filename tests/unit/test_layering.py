"""The pure core stays pure: importing and driving it touches no broker, server, clock or file.

Each check runs in a fresh interpreter (a subprocess) so that modules other
tests imported cannot hide or fake an import.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE_MODULES = [
    "stopbandit.streams.join",
    "stopbandit.streams.events",
    "stopbandit.streams.codec",
    "stopbandit.controller.core",
    "stopbandit.controller.learners.outcome",
    "stopbandit.policies.exploration",
    "stopbandit.policies.builder",
]
# Broker clients, socket servers and the metrics server: the IO edge, never the core.
FORBIDDEN_MODULES = [
    "kafka",
    "confluent_kafka",
    "http.server",
    "socketserver",
    "wsgiref",
    "prometheus_client",
    "asyncio",
    "stopbandit.streams.kafka",
    "stopbandit.controller.daemon",
]

PROBE = textwrap.dedent(
    """
    import builtins, importlib, json, os, sys, time

    ROOT = sys.argv[1]
    PROJECT = tuple(os.path.join(ROOT, p) + os.sep for p in ("streams", "controller", "policies"))
    touched = []

    def guard(name, real):
        def wrapper(*args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(PROJECT):
                touched.append(f"{name} from {caller[len(ROOT) + 1:]}")
            return real(*args, **kwargs)
        return wrapper

    for name in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "process_time"):
        setattr(time, name, guard(f"time.{name}", getattr(time, name)))
    phase = {"imports": touched}
    for module in json.loads(sys.argv[2]):
        importlib.import_module(module)
    loaded = sorted(m for m in json.loads(sys.argv[3]) if m in sys.modules)

    # Drive the core through a join, a learn and a build, with files watched as well.
    builtins.open = guard("open", builtins.open)
    touched = phase["drive"] = []
    from stopbandit.controller.config import StopbanditConfig
    from stopbandit.controller.core import ControllerCore
    from stopbandit.streams.events import Decision, Outcome

    config = StopbanditConfig()
    core = ControllerCore(config)
    for i in range(20):
        rid = f"r{i}"
        core.offer(Decision(v=1, request_id=rid, ts=1.0, segment="s", threshold=0.95,
                            probability=1.0, policy_version=0), now=float(i))
        core.offer(Outcome(v=1, request_id=rid, ts=2.0, segment="s", em=1.0, tokens=100),
                   now=float(i) + 0.5)
    core.expire(now=1000.0)
    policies = core.build_policies(now=1000.0, force=True)
    core.restore(json.loads(json.dumps(core.snapshot())))
    print(json.dumps({"loaded": loaded, "touched": phase, "policies": len(policies),
                      "learned": core.learner.learned}))
    """
)


@pytest.fixture(scope="module")
def report() -> dict[str, object]:
    """Import the pure modules and drive the core in a fresh interpreter; report what it saw."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE,
            str(ROOT),
            json.dumps(PURE_MODULES),
            json.dumps(FORBIDDEN_MODULES),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    seen: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return seen


def test_pure_core_imports_no_broker_server_or_metrics(report: dict[str, object]) -> None:
    """After importing the core, no kafka client, socket server or metrics module is loaded."""
    assert report["loaded"] == []
    assert report["learned"] == 20
    assert report["policies"] == 2  # the segment and the * fallback


def test_pure_core_reads_no_clock_and_no_file(report: dict[str, object]) -> None:
    """Neither importing nor driving the core calls time.* or open() from project code."""
    assert report["touched"] == {"imports": [], "drive": []}


PACKAGES = ("streams", "policies", "controller")
# The serving node installs these; they may import streams and each other, never controller.
NODE_MODULES = (
    "stopbandit.policies.client",
    "stopbandit.policies.sources",
    "stopbandit.policies.emitter",
    "stopbandit.policies.sampling",
    "stopbandit.policies.signing",
    "stopbandit.policies.counterfactual",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["stopbandit", *parts])


def _project_imports() -> dict[str, set[str]]:
    """Every project module and the project modules it imports (at import time or for types)."""
    modules = {
        _module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            imported |= {t for t in targets if t in modules}
        graph[name] = imported - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt.startswith(f"{node}."):  # a package importing its own submodules
                continue
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_project_modules() -> None:
    """No module imports itself through others, not even for type checking."""
    assert _cycle(_project_imports()) is None


def test_streams_and_the_node_sdk_import_nothing_from_the_controller() -> None:
    """Dependencies point down: controller -> policies -> streams, never upward."""
    graph = _project_imports()
    upward = {
        module: sorted(target for target in targets if target.startswith("stopbandit.controller"))
        for module, targets in graph.items()
        if module.startswith("stopbandit.streams") or module in NODE_MODULES
    }
    assert {module: targets for module, targets in upward.items() if targets} == {}
    assert {m for m in graph if m.startswith("stopbandit.policies")} >= set(NODE_MODULES)
