"""Environment variables the configuration does not know: a typo must fail, not vanish.

pydantic-settings ignores a `STOPBANDIT_` variable that matches no field, so a
typo in a section name (`STOPBANDIT_REWARDS__TOKEN_COST_PER_1K`) would leave the
default silently in force. The check lists every name the model accepts and
names the nearest one for each stranger.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from pydantic import BaseModel

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

ENV_PREFIX = "STOPBANDIT_"
NESTED_DELIMITER = "__"


def known_env_names(model: type[BaseModel], prefix: str = ENV_PREFIX) -> set[str]:
    """Every variable name that sets a field of `model` or a whole section of it."""
    names: set[str] = set()
    for name, field in model.model_fields.items():
        full = f"{prefix}{name}".upper()
        names.add(full)
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            names |= known_env_names(section, full + NESTED_DELIMITER)
    return names


def unknown_env_names(
    model: type[BaseModel], environ: Mapping[str, str], allowed: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """(variable, reason) for each `STOPBANDIT_` variable that no field reads.

    Args:
        model: the settings model the variables configure.
        environ: the process environment.
        allowed: other `STOPBANDIT_` names the project reads outside the model.
    """
    known = known_env_names(model) | {name.upper() for name in allowed}
    problems = []
    for variable in sorted(environ):
        upper = variable.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known:
            continue
        nearest = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
        hint = f"; did you mean {nearest[0]}?" if nearest else ""
        problems.append((variable, f"no such setting{hint}"))
    return problems
