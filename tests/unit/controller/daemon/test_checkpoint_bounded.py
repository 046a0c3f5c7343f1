"""A checkpoint over limits.max_segments: the most recent segments read, the others never built."""

from __future__ import annotations

import gzip
import json
import re
import tracemalloc

import numpy as np
import pytest
from daemon_fakes import config
from hypothesis import given, settings
from hypothesis import strategies as st

from stopbandit.controller.core import ControllerCore
from stopbandit.controller.daemon.checkpoint_format import Checkpoint, CorruptCheckpointError
from stopbandit.streams.join import Interaction

TOPIC = "events"
LIMIT = 4
# Each learns three interactions a turn. Least recently learned first: c e f g d a h b.
TURNS = [*"abcdefgh", "d", "a", "h", "b"]
MOST_RECENT = ["d", "a", "h", "b"]
LEAST_RECENT = ["c", "e", "f", "g"]
# Without an order (checkpoints from before the limit): first seen, first evicted.
LAST_FIRST_SEEN = ["e", "f", "g", "h"]
LAYOUTS = ("recency first", "recency last", "no recency")


def learned(turns: list[str], limit: int | None = None) -> ControllerCore:
    """A core (limit: `limits.max_segments`) that learned the turns in order, policies built."""
    cfg = config() if limit is None else config(limits={"max_segments": limit})
    core = ControllerCore(cfg)
    rng = np.random.default_rng(7)
    for turn, segment in enumerate(turns):
        for k in range(3):
            arm = cfg.arms[int(rng.integers(len(cfg.arms)))]
            em = float(rng.random() < 0.3 + 0.6 * arm)
            tokens = int(300 + 2000 * arm * rng.random())
            request = f"r{turn}-{k}"
            context = {"task": f"t-{segment}"}
            core.learn(Interaction(request, segment, context, arm, 1 / 7, 0, em, tokens, 0, 0))
    core.build_policies(1000.0, force=True)
    return core


def blob_of(core: ControllerCore, layout: str) -> bytes:
    """The core's checkpoint as `encode` writes it, or as checkpoints before it were."""
    blob = Checkpoint(TOPIC, 0, 10, 1.0, core.snapshot(), 1.0).encode()
    if layout == "recency first":
        return blob
    document = json.loads(gzip.decompress(blob))
    learner = document["state"]["learner"]
    recency = learner.pop("recency")
    if layout == "recency last":  # written before `encode` put it first
        learner["recency"] = recency
    return gzip.compress(json.dumps(document, separators=(",", ":")).encode())


def restored(checkpoint: Checkpoint, limit: int = LIMIT) -> ControllerCore:
    """A core under `limits.max_segments: limit` restored from the checkpoint."""
    core = ControllerCore(config(limits={"max_segments": limit}))
    core.restore(checkpoint.state)
    return core


def without_models(state: dict) -> dict:
    """A snapshot without the VW model bytes (VW does not re-serialise byte for byte)."""
    learner = {k: v for k, v in state["learner"].items() if not k.endswith("_model")}
    return {**state, "learner": learner}


@pytest.fixture(scope="module")
def big() -> ControllerCore:
    """Eight segments learned with no limit, as before there was one."""
    return learned(TURNS)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_most_recent_segments_are_read_and_the_others_only_evicted(big, layout):
    """Kept: the limit's most recent, their statistics, contexts and policies; evicted: counted."""
    kept = LAST_FIRST_SEEN if layout == "no recency" else MOST_RECENT
    evicted = sorted(set(big.segments) - set(kept))
    checkpoint = Checkpoint.decode(TOPIC, 0, blob_of(big, layout), max_segments=LIMIT)

    learner = checkpoint.state["learner"]
    assert [s for s, value in learner["stats"].items() if value is not None] == sorted(kept)
    assert all(learner["stats"][s] is None for s in evicted)  # never built
    assert sorted(learner["contexts"]) == sorted(kept)
    assert sorted(checkpoint.state["policies"]) == sorted([*kept, "*"])  # `*` is no segment's
    core = restored(checkpoint)
    assert sorted(core.segments) == sorted(kept)
    assert core.learner.evictions == len(evicted)
    if layout == "no recency":
        assert core.take_evicted() == ["a", "b", "c", "d"]
    else:
        assert core.take_evicted() == LEAST_RECENT
    for segment in kept:
        assert core.learner.stats[segment].to_json() == big.learner.stats[segment].to_json()
        assert core.learner.contexts[segment] == big.learner.contexts[segment]
        assert core.book.current[segment] == big.book.current[segment]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_bounded_read_restores_what_reading_it_whole_restores(big, layout):
    """Same core, estimates and next evictions as from the whole document cut by the learner."""
    blob = blob_of(big, layout)
    bounded = restored(Checkpoint.decode(TOPIC, 0, blob, max_segments=LIMIT))
    whole = restored(Checkpoint.decode(TOPIC, 0, blob))

    assert without_models(bounded.snapshot()) == without_models(whole.snapshot())
    assert bounded.take_evicted() == whole.take_evicted()
    ours, theirs = bounded.learner.estimates_all(), whole.learner.estimates_all()
    assert list(ours) == list(theirs)
    for segment, beliefs in ours.items():
        assert np.array_equal(beliefs.em, theirs[segment].em)
        assert np.array_equal(beliefs.tokens_cov, theirs[segment].tokens_cov)
    fresh = Interaction("new", "new", {"task": "t"}, 1.0, 1.0, 0, 1.0, 500, 0, 0)
    bounded.learn(fresh)
    whole.learn(fresh)
    assert bounded.take_evicted() == whole.take_evicted()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_checkpoint_within_the_limit_is_read_whole(big, layout):
    """At or under the limit the bounded read changes nothing."""
    blob = blob_of(big, layout)
    whole = Checkpoint.decode(TOPIC, 0, blob)

    assert Checkpoint.decode(TOPIC, 0, blob, max_segments=len(big.segments)).state == whole.state
    assert Checkpoint.decode(TOPIC, 0, blob, max_segments=100).state == whole.state


def test_encode_writes_the_order_before_the_statistics(big):
    """So that a bounded read knows whom it keeps from the stream's head."""
    learner = json.loads(gzip.decompress(blob_of(big, "recency first")))["state"]["learner"]

    assert list(learner).index("recency") < list(learner).index("stats")
    assert learner == json.loads(json.dumps(big.snapshot()["learner"]))


@pytest.mark.parametrize(
    "recency", [[0, 0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4], list(range(9)), ["a"] * 8, "0,1"]
)
@pytest.mark.parametrize("layout", ["recency first", "recency last"])
def test_an_order_that_does_not_fit_evicts_first_seen_first(big, layout, recency):
    """A damaged or foreign order, wherever it stands: as the learner, first seen first out."""
    document = json.loads(gzip.decompress(blob_of(big, layout)))
    document["state"]["learner"]["recency"] = recency
    blob = gzip.compress(json.dumps(document).encode())

    core = restored(Checkpoint.decode(TOPIC, 0, blob, max_segments=LIMIT))

    assert core.segments == LAST_FIRST_SEEN
    assert core.segments == restored(Checkpoint.decode(TOPIC, 0, blob)).segments


def _text(blob: bytes) -> bytes:
    return gzip.decompress(blob)


CORRUPTIONS = {
    "truncated": (lambda blob: blob[: len(blob) // 2], "unreadable"),
    "bit flipped": (lambda blob: blob[:-12] + bytes([blob[-12] ^ 0x10]) + blob[-11:], "unreadable"),
    "trailing garbage": (lambda blob: blob + gzip.compress(b" x"), "unreadable.*trailing garbage"),
    "not JSON": (lambda blob: gzip.compress(_text(blob)[:-1]), "unreadable.*premature EOF"),
    "segment twice": (
        lambda blob: gzip.compress(_text(blob).replace(b'"stats":{', b'"stats":{"c":{},', 1)),
        "unreadable.*'c' twice",
    ),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_a_damaged_checkpoint_is_a_corrupt_checkpoint_error_naming_partition_and_reason(big, name):
    """Read bounded, damage is the same verdict as read whole: never another exception."""
    damage, reason = CORRUPTIONS[name]
    blob = damage(Checkpoint(TOPIC, 3, 10, 1.0, big.snapshot(), 1.0).encode())

    with pytest.raises(CorruptCheckpointError) as error:
        Checkpoint.decode(TOPIC, 3, blob, max_segments=LIMIT)

    assert error.value.partition == 3
    assert "events[3]" in str(error.value)
    assert "\n" not in error.value.reason
    assert re.search(reason, error.value.reason), error.value.reason


_BLOB = Checkpoint(TOPIC, 0, 10, 1.0, learned(TURNS).snapshot(), 1.0).encode()


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_bounded_decode_of_any_damage_is_a_checkpoint_or_a_corrupt_checkpoint_error(data):
    """A checkpoint over the limit cut, flipped or spliced: never another exception."""
    blob = _BLOB
    damage = data.draw(st.sampled_from(["cut", "flip", "splice"]))
    if damage == "cut":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    elif damage == "flip":
        at = data.draw(st.integers(0, len(blob) - 1))
        blob = blob[:at] + bytes([blob[at] ^ data.draw(st.integers(1, 255))]) + blob[at + 1 :]
    else:
        at = data.draw(st.integers(0, len(blob)))
        blob = blob[:at] + data.draw(st.binary(min_size=1, max_size=64)) + blob[at:]
    outcome = _decoded_or_error(blob)
    if isinstance(outcome, CorruptCheckpointError):
        assert outcome.partition == 0
        assert outcome.reason
    else:
        stats = outcome.state["learner"]["stats"]
        assert sum(value is not None for value in stats.values()) <= LIMIT


def _decoded_or_error(blob: bytes) -> Checkpoint | CorruptCheckpointError:
    try:
        return Checkpoint.decode(TOPIC, 0, blob, max_segments=LIMIT)
    except CorruptCheckpointError as error:
        return error


def test_a_bounded_read_holds_a_fraction_of_what_a_whole_read_holds():
    """2,000 segments under a limit of 10: the peak allocated is far below the whole read's."""
    blob = Checkpoint(TOPIC, 0, 10, 1.0, learned([f"s{i}" for i in range(2000)]).snapshot(), 1.0)
    encoded = blob.encode()

    def peak_bytes(max_segments: int | None) -> int:
        tracemalloc.start()
        try:
            Checkpoint.decode(TOPIC, 0, encoded, max_segments=max_segments)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert peak_bytes(10) < peak_bytes(None) / 4
