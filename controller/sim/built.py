"""Events the simulator builds itself, without validating them.

The simulator writes every field of its decisions and outcomes in its wire
type and within the contract (tests/unit/controller/sim/test_simulate_events.py
checks that validation changes none of them), so validating each one again
only costs time: a fifth of a simulate run with validation, and still a
sixth with pydantic's `model_construct`, which resolves every default per
call. `built` sets the same state `model_construct` does, with the defaults
resolved once per model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from collections.abc import Callable

_M = TypeVar("_M", bound=BaseModel)
_MISSING = object()


class _Shape:
    """A model's fields in declaration order: defaults, factories, the required ones."""

    def __init__(self, model: type[BaseModel]) -> None:
        if model.__private_attributes__ or model.model_config.get("extra") == "allow":
            raise TypeError(f"{model.__name__}: built() takes models without extras or privates")
        self.template: dict[str, Any] = {}
        self.factories: list[tuple[str, Callable[[], Any]]] = []
        self.required: set[str] = set()
        for name, info in model.model_fields.items():
            if info.is_required():
                self.required.add(name)
                self.template[name] = _MISSING
            elif info.default_factory is not None:
                self.factories.append((name, info.default_factory))  # type: ignore[arg-type]
                self.template[name] = _MISSING
            else:
                self.template[name] = info.default


_SHAPES: dict[type[BaseModel], _Shape] = {}


def built(model: type[_M], **values: Any) -> _M:  # noqa: ANN401 - fields in their wire types
    """`model.model_construct(**values)`: the fields as given, defaults for the others.

    Raises:
        TypeError: a required field is missing, or a value names no field.
    """
    shape = _SHAPES.get(model)
    if shape is None:
        shape = _SHAPES[model] = _Shape(model)
    if not values.keys() >= shape.required:
        raise TypeError(f"{model.__name__}: missing {sorted(shape.required - set(values))}")
    state = shape.template.copy()
    state.update(values)
    if len(state) != len(shape.template):
        raise TypeError(f"{model.__name__}: no field {sorted(set(values) - set(shape.template))}")
    for name, factory in shape.factories:
        if state[name] is _MISSING:
            state[name] = factory()
    event = model.__new__(model)
    object.__setattr__(event, "__dict__", state)
    object.__setattr__(event, "__pydantic_fields_set__", set(values))
    object.__setattr__(event, "__pydantic_extra__", None)
    object.__setattr__(event, "__pydantic_private__", None)
    return event
