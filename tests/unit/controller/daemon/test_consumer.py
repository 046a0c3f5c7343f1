"""The Consumer protocol matches kafka-python's KafkaConsumer and the tests' fake.

kafka-python is untyped, so mypy cannot check `KafkaConsumer` against the
protocol; these tests bind each protocol call, as the daemon makes it, to the
real and the fake signatures.
"""

from __future__ import annotations

import inspect

import pytest
from daemon_fakes import FakeConsumer
from kafka import KafkaConsumer

from stopbandit.controller.daemon.consumer import ConsumedRecord, Consumer

MEMBERS = sorted(
    name
    for name, member in vars(Consumer).items()
    if inspect.isfunction(member) and not name.startswith("_")
)


def calls_allowed_by(signature: inspect.Signature) -> list[tuple[list[object], dict[str, object]]]:
    """Argument lists the protocol allows: the required ones, then every optional one too."""
    args: list[object] = []
    kwargs: dict[str, object] = {}
    optional: dict[str, object] = {}
    for parameter in list(signature.parameters.values())[1:]:  # without self
        if parameter.kind is parameter.VAR_POSITIONAL:
            args += [object(), object()]
        elif parameter.kind is parameter.POSITIONAL_ONLY:
            args.append(object())
        elif parameter.default is parameter.empty:
            kwargs[parameter.name] = object()
        else:
            optional[parameter.name] = object()
    return [(args, kwargs), (args, {**kwargs, **optional})]


def test_protocol_names_what_the_daemon_calls():
    """The protocol has the consumer calls the daemon, its partitions and its checkpoints make."""
    assert MEMBERS == [
        "close",
        "commit",
        "commit_async",
        "highwater",
        "pause",
        "poll",
        "position",
        "resume",
        "seek",
        "subscribe",
    ]


@pytest.mark.parametrize("implementation", [KafkaConsumer, FakeConsumer])
@pytest.mark.parametrize("name", MEMBERS)
def test_every_call_the_protocol_allows_binds_to_the_implementation(implementation, name):
    """Each member exists and accepts every argument list the protocol allows."""
    method = getattr(implementation, name, None)
    assert callable(method), f"{implementation.__name__} has no {name}"
    signature = inspect.signature(method)
    for args, kwargs in calls_allowed_by(inspect.signature(getattr(Consumer, name))):
        signature.bind(object(), *args, **kwargs)


def test_a_wrong_signature_does_not_bind():
    """The check above can fail: a `seek` without its offset does not take the protocol's call."""

    def seek(self, partition):
        """Seek without an offset."""

    (args, kwargs), _ = calls_allowed_by(inspect.signature(Consumer.seek))
    with pytest.raises(TypeError):
        inspect.signature(seek).bind(object(), *args, **kwargs)


def test_record_protocol_names_the_fields_the_fake_record_has():
    """The fake's Record has every field of the ConsumedRecord protocol."""
    from daemon_fakes import Record  # noqa: PLC0415 - next to the one test that needs it

    fields = {name for name, member in vars(ConsumedRecord).items() if isinstance(member, property)}
    assert fields == {"topic", "partition", "offset", "key", "value"}
    assert fields <= set(Record.__dataclass_fields__)
