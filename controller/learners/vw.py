"""Vowpal Wabbit regressions behind one small interface.

Two bindings can serve: `vowpal-wabbit-next` (fast, but no wheels past
Python 3.12) and the maintained `vowpalwabbit` 9.x package. Both read and
write the same model format, so a checkpoint written by one loads in the
other. Examples travel as VW text lines (`label weight |s ... |a ...`),
the format both parse natively.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any, Literal, Protocol

Backend = Literal["vowpal-wabbit-next", "vowpalwabbit"]


class Regressor(Protocol):
    """An online regression on VW text lines."""

    backend: Backend

    def learn_one(self, line: str) -> None:
        """Update on one labelled line (`label weight |ns features...`)."""

    def predict_one(self, line: str) -> float:
        """Predict the label of one unlabelled line."""

    def serialize(self) -> bytes:
        """The model in VW's binary format."""


class _NextRegressor:
    """`vowpal-wabbit-next` binding."""

    backend: Backend = "vowpal-wabbit-next"

    def __init__(self, args: list[str], model: bytes | None) -> None:
        import vowpal_wabbit_next as vw  # noqa: PLC0415 - only one binding is installed

        self._workspace: Any = (
            vw.Workspace(args) if model is None else vw.Workspace(args, model_data=model)
        )
        self._parser: Any = vw.TextFormatParser(self._workspace)
        # The learn path calls the extension directly, as the public wrappers do after
        # wrapping the parsed example and checking its label type twice per call: those
        # checks cost more than VW's own learning, and a text-parsed line under this
        # regression always carries the workspace's (simple) label type.
        core: Any = getattr(vw, "_core", None)
        self._parse_core: Any = getattr(core, "_parse_line_text", None)
        self._core_workspace: Any = getattr(self._workspace, "_workspace", None)

    def learn_one(self, line: str) -> None:
        if self._parse_core is None or self._core_workspace is None:
            self._workspace.learn_one(self._parser.parse_line(line))
            return
        self._core_workspace.learn_one(self._parse_core(self._core_workspace, line))

    def predict_one(self, line: str) -> float:
        return float(self._workspace.predict_one(self._parser.parse_line(line)))

    def serialize(self) -> bytes:
        return bytes(self._workspace.serialize())


class _ClassicRegressor:
    """`vowpalwabbit` 9.x binding; it saves models to files only, so bytes go through one."""

    backend: Backend = "vowpalwabbit"

    def __init__(self, args: list[str], model: bytes | None) -> None:
        import vowpalwabbit  # noqa: PLC0415 - only one binding is installed

        if model is None:
            self._workspace: Any = vowpalwabbit.Workspace(" ".join(args))
            return
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "model.vw"
            path.write_bytes(model)
            self._workspace = vowpalwabbit.Workspace(" ".join([*args, "-i", str(path)]))

    def learn_one(self, line: str) -> None:
        self._workspace.learn(line)

    def predict_one(self, line: str) -> float:
        return float(self._workspace.predict(line))

    def serialize(self) -> bytes:
        fd, name = tempfile.mkstemp(suffix=".vw")
        os.close(fd)
        try:
            self._workspace.save(name)
            return Path(name).read_bytes()
        finally:
            Path(name).unlink(missing_ok=True)


def available_backend(preferred: str = "auto") -> Backend:
    """The binding to use: `preferred` if installed, else whichever is.

    Raises:
        RuntimeError: neither binding (or not the preferred one) is installed.
    """
    modules: dict[Backend, str] = {
        "vowpal-wabbit-next": "vowpal_wabbit_next",
        "vowpalwabbit": "vowpalwabbit",
    }
    installed = [name for name, module in modules.items() if importlib.util.find_spec(module)]
    if preferred == "auto" and installed:
        return installed[0]
    for name in installed:
        if name == preferred:
            return name
    raise RuntimeError(
        f"learner.backend: {preferred!r} is not installed (installed: {installed or 'none'})"
    )


def make_regressor(args: list[str], backend: Backend, model: bytes | None = None) -> Regressor:
    """A regressor with VW command-line `args`, fresh or loaded from `model` bytes."""
    if backend == "vowpal-wabbit-next":
        return _NextRegressor(args, model)
    return _ClassicRegressor(args, model)
