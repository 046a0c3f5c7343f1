"""The daemon's outcome figures against fakes: groups, gauges, /savings, bounded labels."""

from __future__ import annotations

import json
import math
import urllib.request
from typing import TYPE_CHECKING

from daemon_fakes import (
    SEGMENT,
    FakeClock,
    FakeConsumer,
    FakeProducer,
    FakeStore,
    Journal,
    config,
)

from stopbandit.controller.core import ControllerCore
from stopbandit.controller.daemon.checkpoint_format import Checkpoint
from stopbandit.controller.daemon.checkpoint_stores import DirCheckpointStore
from stopbandit.controller.daemon.http import HttpServer
from stopbandit.controller.daemon.loop import Daemon
from stopbandit.controller.savings import FLEET, OTHER_SEGMENTS, savings
from stopbandit.policies.sampling import in_control
from stopbandit.streams.codec import decode, encode
from stopbandit.streams.events import Decision, Outcome

if TYPE_CHECKING:
    from pathlib import Path

FRACTION = 0.2


def _messages(count: int, segment: str = SEGMENT, start: int = 0) -> list[tuple[bytes, bytes]]:
    """Requests served as a node with a 20 % control group at 1.0 serves them.

    Control requests: EM 1 in 3 of 4, 1000 tokens; controlled ones at 0.9: EM 1
    in 1 of 2, 600 tokens.
    """
    messages = []
    for i in range(start, start + count):
        rid = f"{segment.replace('/', '.')}-{i}"
        control = in_control(rid, FRACTION)
        em = float(i % 4 != 0) if control else float(i % 2)
        decision = Decision(
            v=1,
            request_id=rid,
            ts=1000.0 + i,
            segment=segment,
            threshold=1.0 if control else 0.9,
            probability=0.5,
            policy_version=7,
        )
        outcome = Outcome(
            v=1,
            request_id=rid,
            ts=1000.5 + i,
            segment=segment,
            em=em,
            tokens=1000 if control else 600,
        )
        key = segment.encode()
        messages += [(key, encode(decision)), (key, encode(outcome))]
    return messages


def _daemon(batches: list, store: FakeStore | None = None, **overrides: object) -> Daemon:
    journal = Journal()
    daemon = Daemon(
        config(**({"control": {"fraction": FRACTION}} | overrides)),
        consumer_factory=lambda: FakeConsumer(journal, batches, (0,)),
        producer=FakeProducer(journal),
        store=store if store is not None else FakeStore(journal),
        monotonic=FakeClock(),
        wall=lambda: 1_800_000_000.0,
        check_topics=False,
    )
    daemon.open()
    return daemon


def test_groups_gauges_and_savings_document() -> None:
    """Control and controlled requests are told apart; gauges and /savings give their figures."""
    messages = _messages(400)
    daemon = _daemon([{0: messages}])
    daemon.run(max_events=len(messages))
    document = daemon.savings()
    segment = document["segments"][SEGMENT]
    control = segment["requests"]["control"]
    assert segment["requests"]["controlled"] + control == 400
    assert 50 < control < 110
    assert segment["tokens"] == {"control": 1000.0, "controlled": 600.0}
    assert segment["token_reduction"]["estimate"] == 0.4
    assert document["fleet"]["requests"] == segment["requests"]
    sample = daemon.metrics.registry.get_sample_value
    assert sample("stopbandit_outcome_requests", {"segment": SEGMENT, "group": "control"}) == (
        control
    )
    assert sample("stopbandit_outcome_tokens", {"segment": FLEET, "group": "controlled"}) == 600
    change = sample("stopbandit_savings_em_change_pts", {"segment": SEGMENT})
    assert change == segment["em_change_pts"]["estimate"]
    se = sample("stopbandit_savings_em_change_pts_se", {"segment": SEGMENT})
    assert se is not None
    assert se > 0


def test_savings_endpoint_serves_the_document() -> None:
    """GET /savings returns the daemon's document as JSON (no NaN: unknowns are null)."""
    messages = _messages(40)
    daemon = _daemon([{0: messages}])
    daemon.run(max_events=len(messages))
    server = HttpServer(daemon, "127.0.0.1", 0)
    server.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/savings") as response:
            assert response.headers["Content-Type"] == "application/json"
            body = json.loads(response.read())
    finally:
        server.stop()
    assert body == json.loads(json.dumps(daemon.savings()))
    assert body["control"] == {"fraction": FRACTION, "arm": 1.0}


def test_labels_are_bounded_to_the_top_segments() -> None:
    """Only control.top_segments segments get labels; the rest are one `_other` series."""
    messages = []
    for n, segment in enumerate(["a", "b", "c", "d"]):
        messages += _messages(100 - 20 * n, segment)
    daemon = _daemon([{0: messages}], control={"fraction": FRACTION, "top_segments": 2})
    daemon.run(max_events=len(messages))
    families = {
        s.labels["segment"] for s in next(iter(daemon.metrics.savings_em_change.collect())).samples
    }
    assert families == {"a", "b", OTHER_SEGMENTS, FLEET}


def test_without_a_control_group_every_policy_request_is_controlled() -> None:
    """Fraction 0: no control requests, differences unknown (NaN gauges, null in JSON)."""
    messages = _messages(20)
    daemon = _daemon([{0: messages}], control={"fraction": 0.0})
    daemon.run(max_events=len(messages))
    document = daemon.savings()
    assert document["fleet"]["requests"]["control"] == 0
    assert document["fleet"]["em_change_pts"]["estimate"] is None
    value = daemon.metrics.registry.get_sample_value(
        "stopbandit_savings_em_change_pts", {"segment": FLEET}
    )
    assert value is not None
    assert math.isnan(value)


def test_figures_survive_a_restart_through_the_checkpoint() -> None:
    """The tally is in the partition's checkpoint: a restarted daemon goes on counting."""
    store = FakeStore(Journal())
    first_batch, second_batch = _messages(200), _messages(100, start=200)
    first = _daemon([{0: first_batch}], store)
    first.run(max_events=len(first_batch))
    before = first.savings()["fleet"]["requests"]
    second = _daemon([{0: second_batch}], store)
    second.run(max_events=len(second_batch))
    after = second.savings()["fleet"]["requests"]
    assert sum(before.values()) == 200
    assert sum(after.values()) == 300
    assert after["control"] >= before["control"]


def test_a_checkpoint_of_another_control_group_starts_the_figures_afresh() -> None:
    """Another fraction means other membership: the old sums are not continued."""
    store = FakeStore(Journal())
    first_batch, second_batch = _messages(200), _messages(100, start=200)
    _daemon([{0: first_batch}], store).run(max_events=len(first_batch))
    second = _daemon([{0: second_batch}], store, control={"fraction": 0.1})
    second.run(max_events=len(second_batch))
    document = second.savings()
    assert sum(document["fleet"]["requests"].values()) + sum(document["unmatched"].values()) == 100


def test_the_tally_round_trips_through_a_validated_dir_checkpoint(tmp_path: Path) -> None:
    """A real store's validated, compressed checkpoint carries the core's savings sums."""
    cfg = config(control={"fraction": FRACTION})
    core = ControllerCore(cfg)
    for key, value in _messages(300):
        core.offer(decode(key, value), 2000.0)
    store = DirCheckpointStore(tmp_path)
    store.save(Checkpoint("events", 0, 600, 1.0, core.snapshot(), 2000.0))
    loaded = store.load("events", 0)
    assert loaded is not None
    restored = ControllerCore(cfg)
    restored.restore(loaded.state)
    assert savings(restored.savings).to_json() == savings(core.savings).to_json()
    assert sum(savings(restored.savings).fleet.requests.values()) == 300
