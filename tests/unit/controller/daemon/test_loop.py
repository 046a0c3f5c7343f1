"""The daemon loop against fakes: order of side effects, dead letters, restore, signals."""

from __future__ import annotations

import json
import os
import signal

import pytest
from daemon_fakes import (
    SEGMENT,
    FakeClock,
    FakeConsumer,
    FakeProducer,
    FakeStore,
    Journal,
    config,
    interaction,
)
from structlog.testing import capture_logs

from stopbandit.controller.daemon.loop import NO_KEY_REASON, Daemon
from stopbandit.controller.daemon.publish import version_floor
from stopbandit.controller.daemon.traces import DROPPED_TRACES_LOGGED

WALL_S = 1_800_000_000.0


def make_daemon(
    batches, journal, *, store=None, clock=None, partitions=(0,), log_offsets=None, **overrides
):
    """A daemon wired to fakes; returns it and its consumer (created on open)."""
    holder = {}

    def consumer_factory():
        holder["consumer"] = FakeConsumer(journal, batches, partitions)
        return holder["consumer"]

    daemon = Daemon(
        config(**overrides),
        consumer_factory=consumer_factory,
        producer=FakeProducer(journal),
        store=store or FakeStore(journal),
        monotonic=clock or FakeClock(),
        wall=lambda: WALL_S,
        check_topics=False,
        log_offsets=log_offsets,
    )
    daemon.open()
    return daemon, holder["consumer"]


def test_flush_then_checkpoint_then_commit_on_stop():
    """On stop: flush policies and dead letters, then checkpoint, then commit."""
    journal = Journal()
    messages = [*interaction(1), (SEGMENT.encode(), b"{not json")]
    daemon, _ = make_daemon([{0: messages}], journal)

    daemon.run(max_events=3)

    kinds = journal.kinds()
    flush = kinds.index("flush")
    checkpoint = kinds.index("checkpoint")
    commit = kinds.index("commit")
    assert flush < checkpoint < commit
    assert journal.entries[checkpoint][1] == (0, 3)
    assert journal.entries[commit][1] == {0: 3}
    assert "dlq" in journal.entries[flush][1]
    assert kinds[-2:] == ["consumer.close", "producer.close"]


def test_commit_never_runs_ahead_of_a_checkpoint():
    """Every committed offset was covered by a checkpoint written before it."""
    journal = Journal()
    clock = FakeClock()
    batches = [{0: interaction(i)} for i in range(6)]
    daemon, consumer = make_daemon(batches, journal, clock=clock)
    consumer.on_poll = lambda: setattr(clock, "now_s", clock.now_s + 2.0)

    daemon.run(max_events=12)

    checkpointed = 0
    for what, detail in journal.entries:
        if what == "checkpoint":
            checkpointed = max(checkpointed, detail[1])
        if what == "commit":
            assert detail[0] <= checkpointed
    assert journal.kinds().count("checkpoint") >= 2


def test_invalid_messages_are_dead_lettered_and_the_loop_goes_on():
    """Each invalid message lands in the DLQ with its reason and place; valid ones are learned."""
    journal = Journal()
    bad = [
        (SEGMENT.encode(), b"\xff\xfe binary"),
        (b"other/segment", interaction(7)[0][1]),
        *interaction(2, arm=0.42),
    ]
    daemon, _ = make_daemon([{0: bad + interaction(3)}], journal)
    producer = daemon._producer

    with capture_logs() as logs:
        daemon.run(max_events=len(bad) + 2)

    letters = [json.loads(v) for t, _, v in producer.sent if t == "dlq"]
    assert [letter["offset"] for letter in letters] == [0, 1, 2]
    assert letters[0]["reason"].startswith("value: not UTF-8")
    assert letters[1]["reason"] == "decision.segment: does not match the message key"
    assert "is not one of the arms" in letters[2]["reason"]
    assert {letter["partition"] for letter in letters} == {0}
    sample = daemon.metrics.registry.get_sample_value
    assert sample("stopbandit_events_invalid_total", {"reason": "json"}) == 1
    assert sample("stopbandit_events_invalid_total", {"reason": "key"}) == 1
    assert sample("stopbandit_events_invalid_total", {"reason": "arm"}) == 1
    assert sample("stopbandit_interactions_learned_total") == 1
    dead = [e for e in logs if e["event"] == "event.dead_lettered"]
    assert [(e["partition"], e["offset"]) for e in dead] == [(0, 0), (0, 1), (0, 2)]


def test_restore_seeks_to_the_checkpoint_and_skips_joined_replays():
    """A restarted daemon seeks to its checkpoint's offset; replayed joined ids are skipped."""
    journal = Journal()
    store = FakeStore(journal)
    first, _ = make_daemon([{0: interaction(1) + interaction(2)}], journal, store=store)
    first.run(max_events=4)
    assert store.saved[0].offset == 4

    # The topic is replayed from 0 (as after a lost commit); the checkpoint says 4.
    replay = interaction(1) + interaction(2) + interaction(3)
    second, consumer = make_daemon([{0: replay[4:]}], journal, store=store)
    consumer.offsets[0] = 0
    second.run(max_events=2)

    assert ("seek", (0, 4)) in journal.entries
    assert store.saved[0].state["learner"]["learned"] == 3
    sample = second.metrics.registry.get_sample_value
    assert sample("stopbandit_interactions_learned_total") == 1


def test_duplicate_interaction_after_restore_counts_as_skipped():
    """An interaction produced twice is learned once; both replayed messages count as skipped."""
    journal = Journal()
    daemon, _ = make_daemon([{0: interaction(1) + interaction(1)}], journal)

    daemon.run(max_events=4)

    sample = daemon.metrics.registry.get_sample_value
    assert sample("stopbandit_interactions_learned_total") == 1
    assert sample("stopbandit_interactions_skipped_total") == 2


def test_versions_start_at_the_wall_clock_floor_and_increase():
    """Published versions exceed the time floor and strictly increase across rounds."""
    journal = Journal()
    clock = FakeClock()
    batches = [{0: interaction(i, em=float(i % 2))} for i in range(5)]
    daemon, consumer = make_daemon(batches, journal, clock=clock)
    consumer.on_poll = lambda: setattr(clock, "now_s", clock.now_s + 1.5)

    daemon.run(max_events=10)

    versions = [json.loads(v)["version"] for t, _, v in daemon._producer.sent if t == "policies"]
    assert versions
    assert versions[0] > version_floor(WALL_S)
    assert versions == sorted(set(versions))


def test_sigterm_sets_the_flag_and_the_loop_stops_cleanly():
    """SIGTERM only sets the stop flag: the batch finishes, then checkpoint, commit, close."""
    journal = Journal()
    batches = [{0: interaction(i)} for i in range(50)]
    daemon, consumer = make_daemon(batches, journal)
    previous = signal.getsignal(signal.SIGTERM)
    daemon.install_signal_handlers()
    polls = {"n": 0}

    def on_poll():
        polls["n"] += 1
        if polls["n"] == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    consumer.on_poll = on_poll
    try:
        daemon.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    assert polls["n"] == 4
    assert daemon.events_processed == 6  # the fourth poll's batch was finished
    assert journal.kinds()[-4:] == ["checkpoint", "commit", "consumer.close", "producer.close"]
    assert consumer.committed == {0: 6}
    assert daemon.final_checkpoint_written


class UnwritableStore(FakeStore):
    """A store whose writes fail (a full disk, a broker gone)."""

    def save(self, checkpoint):  # noqa: D102
        from stopbandit.controller.daemon.checkpoint_stores import CheckpointError  # noqa: PLC0415

        raise CheckpointError(checkpoint.topic, checkpoint.partition, "No space left on device")


def test_a_failed_final_checkpoint_is_reported_not_hidden():
    """The stop's checkpoint fails: the daemon still closes, and says so (for the exit code)."""
    journal = Journal()
    daemon, _ = make_daemon([{0: interaction(1)}], journal, store=UnwritableStore(journal))

    with capture_logs() as logs:
        daemon.run(max_events=2)

    assert not daemon.final_checkpoint_written
    assert journal.kinds()[-2:] == ["consumer.close", "producer.close"]
    [failed] = [e for e in logs if e["event"] == "daemon.final_checkpoint_failed"]
    assert (failed["log_level"], failed["dirty"]) == ("error", [0])


def test_readiness_needs_assignment_restore_and_a_publish():
    """Not ready before the first assignment and publish; ready after."""
    journal = Journal()
    daemon, _ = make_daemon([{0: interaction(1)}], journal)
    assert not daemon.ready
    assert daemon.healthy

    daemon.run(max_events=2)

    assert daemon.ready
    assert daemon.policies()[SEGMENT].segment == SEGMENT


@pytest.mark.parametrize("partitions", [(0, 1), (1, 2)])
def test_fallback_is_published_only_by_the_owner_of_partition_0(partitions):
    """The `*` policy has one writer: the replica owning partition 0."""
    journal = Journal()
    daemon, _ = make_daemon(
        [{p: interaction(10 * p + 1) for p in partitions}], journal, partitions=partitions
    )

    daemon.run(max_events=4)

    keys = {k for t, k, _ in daemon._producer.sent if t == "policies"}
    assert (b"*" in keys) == (0 in partitions)


def test_dropped_counterfactual_traces_are_counted_by_reason_and_logged():
    """Wire rules at decode, decision rules at the join: each reason counted; outcomes learned."""
    journal = Journal()
    traces = [
        (1.0, [[0.5, 1.0, 950]]),  # more tokens than the outcome's 900
        (1.0, [[0.5, 1.0, 400.5]]),  # tokens not an integer
        (1.0, [[0.7, 1.0, 400], [0.5, 1.0, 300]]),  # descending arms
        (1.0, [0.5, 1.0, 400]),  # not an array of triples
        (0.7, [[0.9, 1.0, 400]]),  # at or above the played arm
        (1.0, [[0.42, 1.0, 400]]),  # not one of the arms
        (1.0, [[0.5, 0.0, 300], [0.9, 1.0, 700]]),  # valid
    ]
    messages = [m for i, (arm, trace) in enumerate(traces) for m in interaction(i, arm, 1.0, trace)]
    daemon, _ = make_daemon([{0: messages}], journal)

    with capture_logs() as logs:
        daemon.run(max_events=len(messages))

    sample = daemon.metrics.registry.get_sample_value
    dropped = {
        reason: sample("stopbandit_counterfactual_dropped_total", {"reason": reason})
        for reason in ("monotone", "tokens", "order", "shape", "not_below_played", "unknown_arm")
    }
    assert dropped == dict.fromkeys(dropped, 1.0)
    assert sample("stopbandit_counterfactual_dropped_total", {"reason": "em"}) is None
    assert sample("stopbandit_interactions_learned_total") == len(traces)
    assert sample("stopbandit_events_invalid_total", {"reason": "schema"}) is None
    logged = [
        (e["reason"], e["partition"], e["offset"], e["request_id"])
        for e in logs
        if e["event"] == "counterfactual.dropped"
    ]
    # Each outcome is the second message of its request: offsets 1, 3, 5, ...
    assert logged == [
        ("monotone", 0, 1, "r-0"),
        ("tokens", 0, 3, "r-1"),
        ("order", 0, 5, "r-2"),
        ("shape", 0, 7, "r-3"),
        ("not_below_played", 0, 9, "r-4"),
        ("unknown_arm", 0, 11, "r-5"),
    ]


def test_a_decision_rule_drop_is_counted_on_the_event_completing_the_join():
    """An outcome that arrives first waits; the decision completing the join carries the drop."""
    journal = Journal()
    decision, outcome = interaction(1, 0.7, 1.0, [[0.9, 1.0, 400]])
    daemon, _ = make_daemon([{0: [outcome, decision]}], journal)

    with capture_logs() as logs:
        daemon.run(max_events=2)

    sample = daemon.metrics.registry.get_sample_value
    assert sample("stopbandit_counterfactual_dropped_total", {"reason": "not_below_played"}) == 1
    (event,) = [e for e in logs if e["event"] == "counterfactual.dropped"]
    assert (event["offset"], event["request_id"]) == (1, "r-1")


def test_only_the_first_drops_of_each_reason_are_logged_every_one_counted():
    """A node sending every trace wrong fills the counter, not the log."""
    journal = Journal()
    bad = 3 * DROPPED_TRACES_LOGGED
    messages = [m for i in range(bad) for m in interaction(i, 1.0, 1.0, [[0.5, 1.0, 950]])]
    messages += [m for i in range(bad, 2 * bad) for m in interaction(i, 0.7, 1.0, [[0.9, 1, 9]])]
    daemon, _ = make_daemon([{0: messages}], journal)

    with capture_logs() as logs:
        daemon.run(max_events=len(messages))

    sample = daemon.metrics.registry.get_sample_value
    assert sample("stopbandit_counterfactual_dropped_total", {"reason": "monotone"}) == bad
    assert sample("stopbandit_counterfactual_dropped_total", {"reason": "not_below_played"}) == bad
    reasons = [e["reason"] for e in logs if e["event"] == "counterfactual.dropped"]
    expected = ["monotone"] * DROPPED_TRACES_LOGGED + ["not_below_played"] * DROPPED_TRACES_LOGGED
    assert reasons == expected


def test_a_valid_trace_teaches_the_lower_arms_the_node_never_played():
    """Requests played only at the reference arm publish estimates for the arms they traced."""
    journal = Journal()
    trace = [[0.5, 0.0, 300], [0.8, 1.0, 600], [0.95, 1.0, 850]]
    messages = [m for i in range(6) for m in interaction(i, 1.0, 1.0, trace)]
    daemon, _ = make_daemon([{0: messages}], journal)

    daemon.run(max_events=len(messages))

    estimates = daemon.policies()[SEGMENT].estimates
    assert estimates is not None
    n = dict(zip(daemon.config.arms, estimates.n, strict=True))
    assert all(n[arm] > 0 for arm in (0.5, 0.8, 0.95)), n
    sample = daemon.metrics.registry.get_sample_value
    assert sample("stopbandit_counterfactual_dropped_total", {"reason": "monotone"}) is None


def test_a_message_without_key_is_dead_lettered_not_learned():
    """A null key would let one segment be learned by several partitions: DLQ, kind key."""
    journal = Journal()
    unkeyed = [(None, value) for _, value in interaction(5)]
    daemon, _ = make_daemon([{0: unkeyed + interaction(6)}], journal)

    daemon.run(max_events=len(unkeyed) + 2)

    letters = [json.loads(v) for t, _, v in daemon._producer.sent if t == "dlq"]
    assert [(letter["offset"], letter["reason"]) for letter in letters] == [
        (0, NO_KEY_REASON),
        (1, NO_KEY_REASON),
    ]
    sample = daemon.metrics.registry.get_sample_value
    assert sample("stopbandit_events_invalid_total", {"reason": "key"}) == 2
    assert sample("stopbandit_interactions_learned_total") == 1


def test_every_policy_is_republished_on_the_slow_period_changed_or_not():
    """Anti-entropy: every republish_interval_s each segment goes out again; a lost topic heals."""
    journal = Journal()
    clock = FakeClock()
    batches = [{0: interaction(0)}, *({} for _ in range(12))]
    daemon, consumer = make_daemon(
        batches, journal, clock=clock, publish={"interval_s": 1.0, "republish_interval_s": 10.0}
    )
    consumer.on_poll = lambda: setattr(clock, "now_s", clock.now_s + 1.5)

    daemon.run(max_events=2, idle_timeout_s=None)
    for _ in range(12):  # quiet rounds: nothing changes, only the period forces a round
        clock.now_s += 1.5
        daemon.publish()

    sent = [
        json.loads(v)
        for t, k, v in daemon._producer.sent
        if t == "policies" and k == SEGMENT.encode()
    ]
    versions = [policy["version"] for policy in sent]
    assert len(sent) >= 2, "the unchanged policy was never sent again"
    assert versions == sorted(set(versions))
    assert {policy["greedy"] for policy in sent} == {sent[0]["greedy"]}


class EndsAt:
    """LogOffsets of a log whose end a test moves (nothing committed, beginning 0)."""

    def __init__(self, end):
        self.end = end

    def committed(self, partition):  # noqa: D102, ARG002
        return None

    def beginning(self, partition):  # noqa: D102, ARG002
        return 0

    def beyond_end(self, partition, offset):  # noqa: D102, ARG002
        return self.end if offset > self.end else None


def test_a_log_that_moves_back_under_a_partition_is_restored_again_not_skipped():
    """A topic recreated mid-run: the partition is restored again and refused, not skipped.

    The consumer resets to 0, below the partition's 4; the restore finds the
    checkpoint past the new log's end (offset_ahead).
    """
    journal = Journal()
    store = FakeStore(journal)
    first, _ = make_daemon([{0: interaction(1) + interaction(2)}], journal, store=store)
    first.run(max_events=4)
    ends = EndsAt(10**9)
    second, consumer = make_daemon(
        [{0: interaction(3)}], journal, store=store, log_offsets=lambda _: ends
    )
    polls = {"n": 0}

    def on_poll():
        polls["n"] += 1
        if polls["n"] == 2:  # restored at 4; now the topic is recreated with 2 events
            consumer.offsets[0] = 0
            ends.end = 2
        if polls["n"] == 6:
            second.stop()

    consumer.on_poll = on_poll
    with capture_logs() as logs:
        second.run()

    kinds = {e["event"]: e for e in logs}
    assert kinds["partition.offset_moved_back"]["log_level"] == "error"
    assert (
        kinds["partition.offset_moved_back"]["offset"],
        kinds["partition.refused"]["reason"],
    ) == (
        0,
        "offset_ahead",
    )
    assert second.events_processed == 0
    assert (store.saved[0].offset, store.saved[0].state["learner"]["learned"]) == (4, 2)
    assert not second.ready
