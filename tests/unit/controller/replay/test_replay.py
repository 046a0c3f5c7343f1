"""Replay's plumbing on a hand-written log: join, propensities, reward weights, naming."""

from __future__ import annotations

import json

import numpy as np
import pytest
from kafka.partitioner import DefaultPartitioner
from structlog.testing import capture_logs

from controller.config import load_config
from controller.core import ControllerCore
from controller.daemon.checkpoint_stores import DirCheckpointStore
from controller.ope import dr, fold_assignment
from controller.replay.document import build_document
from controller.replay.evaluate import evaluate, support_check
from controller.replay.feed import RawEvent, replay
from controller.replay.sources import RangeBound, file_events
from controller.replay.targets import (
    Sweep,
    fixed_targets,
    greedy_under,
    learned_target,
    logged_target,
    sweep_targets,
)
from controller.replay.warm_start import default_partition, export_checkpoints
from streams.codec import decode

# reward = 2 EM - 10 * tokens / 1000 = 2 EM - 0.01 tokens
CONFIG = load_config(
    None,
    arms=[0.5, 1.0],
    reference_arm=1.0,
    default_arm=1.0,
    reward={"em_weight": 2.0, "token_cost_per_1k": 10.0},
)
PMF_A = [[0.5, 0.25], [1.0, 0.75]]
PMF_B = [[0.5, 0.5], [1.0, 0.5]]


def decision(rid, segment, threshold, probability, pmf=None):
    """One decision line."""
    doc = {"type": "decision", "v": 1, "request_id": rid, "ts": 100.0, "segment": segment,
           "threshold": threshold, "probability": probability, "policy_version": 1}  # fmt: skip
    if pmf is not None:
        doc["pmf"] = pmf
    return json.dumps(doc)


def outcome(rid, segment, em, tokens):
    """One outcome line."""
    return json.dumps({"type": "outcome", "v": 1, "request_id": rid, "ts": 101.0,
                       "segment": segment, "em": em, "tokens": tokens})  # fmt: skip


LINES = [
    decision("r1", "a", 0.5, 0.25, PMF_A),
    outcome("r1", "a", 1.0, 100),  # reward 2 - 1 = 1
    outcome("r2", "a", 0.0, 300),  # outcome first; reward -3
    decision("r2", "a", 1.0, 0.75, PMF_A),
    decision("r3", "b", 1.0, 0.5, PMF_B),
    outcome("r3", "b", 1.0, 200),  # reward 0
    decision("r4", "b", 0.5, 0.5, PMF_B),
    outcome("r4", "b", 1.0, 50),  # reward 1.5
    "not json",
    decision("r5", "b", 0.7, 0.5),  # not an arm
    outcome("r1", "a", 1.0, 100),  # already joined
    decision("r6", "a", 1.0, 1.0),  # fallback decision: no pmf, p = 1
    outcome("r6", "a", 0.0, 400),  # reward -4
    outcome("r7", "b", 1.0, 10),  # never joins
]
REWARDS = [1.0, -3.0, 0.0, 1.5, -4.0]


def raw(lines):
    """Lines as raw events of a file."""
    return [RawEvent("test.jsonl", i + 1, None, line.encode()) for i, line in enumerate(lines)]


@pytest.fixture(scope="module")
def log():
    """The hand-written log replayed without learning."""
    return replay(raw(LINES), CONFIG, learn=False)


@pytest.fixture(scope="module")
def evaluation(log):
    """Every fixed threshold and the logged policy."""
    return evaluate(log, [logged_target(), *fixed_targets(log)], CONFIG.reward)


def test_join_gives_interactions_in_join_order_with_their_propensities(log):
    """Both arrival orders join; each row carries its segment, arm, p, EM and tokens."""
    assert log.segments == ["a", "b"]
    assert log.segment.tolist() == [0, 0, 1, 1, 0]
    assert log.arm.tolist() == [0, 1, 1, 0, 1]
    assert log.probability.tolist() == [0.25, 0.75, 0.5, 0.5, 1.0]
    assert log.em.tolist() == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert log.tokens.tolist() == [100.0, 300.0, 200.0, 50.0, 400.0]


def test_logged_pmfs_are_mapped_onto_the_configured_arms(log):
    """A decision's pmf becomes a row over the arms; a fallback (p = 1, no pmf) a point mass."""
    assert log.logged_pmf.tolist() == [
        [0.25, 0.75], [0.25, 0.75], [0.5, 0.5], [0.5, 0.5], [0.0, 1.0],
    ]  # fmt: skip


def test_invalid_lines_are_counted_by_kind_and_logged_never_fatal():
    """Bad JSON and unknown arms are counted and logged; duplicates and orphans are counted."""
    with capture_logs() as events:
        result = replay(raw(LINES), CONFIG, learn=False)
    stats = result.stats.to_json()
    assert stats["invalid"] == {"arm": 1, "json": 1}
    assert stats["events"] == 14
    assert stats["decisions"] == 5
    assert stats["join"]["already_joined"] == 1
    assert stats["pending_at_end"] == 1
    rejected = [e for e in events if e["event"] == "replay.invalid_event"]
    assert [(e["kind"], e["position"]) for e in rejected] == [("json", 9), ("arm", 10)]


def test_nothing_joined_is_an_error():
    """A log without a single joined pair has nothing to evaluate."""
    with pytest.raises(ValueError, match="nothing to replay"):
        replay(raw(["not json", outcome("x", "a", 1.0, 1)]), CONFIG, learn=False)


def test_ips_and_snips_of_fixed_thresholds_match_the_hand_computed_formulas(evaluation):
    """IPS = (1/n) Σ w y and SNIPS = Σ w y / Σ w, with the reward under the configured weights."""
    fixed_low = evaluation.find("fixed:0.5", "ips")
    # The weights are 1/0.25, 0, 0, 1/0.5 and 0.
    assert fixed_low.reward.value == pytest.approx((4 * 1.0 + 2 * 1.5) / 5)
    assert fixed_low.em.value == pytest.approx((4 * 1.0 + 2 * 1.0) / 5)
    assert fixed_low.tokens.value == pytest.approx((4 * 100 + 2 * 50) / 5)
    assert fixed_low.reward.ess == pytest.approx(36 / 20)
    assert fixed_low.reward.max_weight == pytest.approx(4.0)
    snips_low = evaluation.find("fixed:0.5", "snips")
    assert snips_low.reward.value == pytest.approx(7.0 / 6.0)
    fixed_high = evaluation.find("fixed:1", "ips")
    assert fixed_high.reward.value == pytest.approx((-3.0 / 0.75 + 0.0 / 0.5 - 4.0 / 1.0) / 5)
    snips_high = evaluation.find("fixed:1", "snips")
    assert snips_high.reward.value == pytest.approx(-8.0 / (1 / 0.75 + 2 + 1))


def test_per_segment_estimates_use_only_that_segments_rows(evaluation):
    """Segment a's IPS of threshold 0.5 averages over its 3 rows only."""
    assert evaluation.find("fixed:0.5", "ips", "a").reward.value == pytest.approx(4.0 / 3)
    assert evaluation.find("fixed:0.5", "ips", "b").reward.value == pytest.approx(2 * 1.5 / 2)
    assert evaluation.find("fixed:0.5", "ips", "a").reward.n == 3


def test_the_logged_policy_is_evaluated_on_policy(evaluation):
    """Weights are 1: IPS and SNIPS are the sample mean of the per-row reward."""
    assert evaluation.find("logged", "ips").reward.value == pytest.approx(np.mean(REWARDS))
    assert evaluation.find("logged", "snips").reward.value == pytest.approx(np.mean(REWARDS))
    assert evaluation.find("logged", "ips").reward.ess == pytest.approx(5.0)


def test_dr_is_the_cross_fitted_estimator_with_one_shared_fold_assignment(log, evaluation):
    """Replay's DR equals `ope.dr` on the same rows with fold_assignment(n, 5, seed 0)."""
    pmf = np.tile([1.0, 0.0], (5, 1))
    expected = dr(
        pmf, log.arm, log.segment, log.probability, np.array(REWARDS), folds=fold_assignment(5)
    )
    actual = evaluation.find("fixed:0.5", "dr").reward
    assert actual.value == pytest.approx(expected.value, abs=1e-12)
    assert (actual.ci_low, actual.ci_high) == pytest.approx((expected.ci_low, expected.ci_high))


def test_reward_weights_come_from_the_config(log):
    """Other weights give the reward recomputed from raw EM and tokens."""
    weights = CONFIG.reward.model_copy(update={"em_weight": 1.0, "token_cost_per_1k": 0.0})
    result = evaluate(log, [logged_target()], weights)
    assert result.find("logged", "ips").reward.value == pytest.approx(log.em.mean())


def test_missing_support_is_measured_from_the_logged_pmfs_and_warned_about(evaluation):
    """Threshold 0.5 had probability 0 on the fallback row: 80% support, and a warning."""
    estimate = evaluation.find("fixed:0.5", "dr")
    assert estimate.support == pytest.approx(0.8)
    assert any("no support for 20.0%" in w for w in estimate.warnings)
    assert evaluation.find("fixed:1", "dr").support == pytest.approx(1.0)


def test_support_is_unknown_without_logged_pmfs():
    """Rows without a pmf are left out of the support check and said to be unknown."""
    support, warnings = support_check(np.array([[1.0, 0.0]] * 2), np.full((2, 2), np.nan))
    assert support is None
    assert warnings == ("support unknown on 100.0% of rows (decisions without a pmf)",)


def test_estimator_warnings_name_segments_not_group_numbers(evaluation):
    """Missing-support warnings say which segment, by key."""
    warnings = evaluation.find("fixed:0.5", "ips").warnings
    assert not any("group" in w for w in warnings)


def test_learned_policy_scores_each_interaction_with_the_policy_built_before_it():
    """No peeking: row 2 is scored with what a core trained on rows 0-1 only builds.

    Rows before the first build use the default arm.
    """
    result = replay(raw(LINES), CONFIG, publish_every=2)
    assert result.learned_pmf[0].tolist() == [0.0, 1.0]
    assert result.learned_pmf[1].tolist() == [0.0, 1.0]
    core = ControllerCore(CONFIG)
    for line in LINES[:4]:
        event = decode(None, line.encode())
        core.offer(event, event.ts)
    policies = {p.segment: p for p in core.build_policies(101.0)}
    expected = policies.get("b") or policies["*"]
    assert result.learned_pmf[2].tolist() == expected.pmf


def test_policies_are_named_and_the_json_holds_every_required_field():
    """logged, fixed:<t>, learned and sweep:<token cost>, each with three estimators."""
    result = replay(raw(LINES), CONFIG)
    sweep = Sweep.parse("token_cost_per_1k=0:20:3")
    targets = [logged_target(), *fixed_targets(result), learned_target(result)]
    targets += sweep_targets(result, sweep)
    document = build_document(
        result, evaluate(result, targets, CONFIG.reward), targets, CONFIG.reward,
        sources=["test"], publish_every=1000, folds=5, fold_seed=0, confidence=0.95, sweep=sweep,
    )  # fmt: skip
    names = [(p["name"], p["estimator"]) for p in document["policies"]]
    expected_names = [
        "logged",
        "fixed:0.5",
        "fixed:1",
        "learned",
        "sweep:0",
        "sweep:10",
        "sweep:20",
    ]
    assert names == [(n, e) for n in expected_names for e in ("ips", "snips", "dr")]
    required = {"name", "estimator", "reward", "ci_low", "ci_high", "em", "tokens", "ess"}
    assert all(required <= set(p) for p in document["policies"])
    assert set(document["segments"]) == {"a", "b"}
    assert len(document["segments"]["a"]["policies"]) == len(names)
    json.dumps(document, allow_nan=False)  # NaN (SNIPS without weight) is null


def test_a_sweep_point_at_the_configured_weight_is_the_learned_greedy_policy():
    """At the configured weight, a sweep point picks what the core published.

    The sweep applies the builder's rule to the final estimates.
    """
    result = replay(raw(LINES * 20), CONFIG)  # duplicates skipped; the same 5 interactions
    assert result.core is not None
    greedy = greedy_under(result.core, CONFIG.reward)
    published = {s: p.greedy for s, p in result.core.policies.items() if s != "*"}
    assert greedy == published


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("token_cost_per_1k=0.005:0.05:10", tuple(np.linspace(0.005, 0.05, 10))),
        ("token_cost_per_1k=0.02", (0.02,)),
        ("em_weight=1:2:2", (1.0, 2.0)),
    ],
)
def test_sweep_specs_parse(text, values):
    """FIELD=START:STOP:POINTS includes both ends; one value is one point."""
    assert Sweep.parse(text).values == pytest.approx(values)


@pytest.mark.parametrize(
    "text",
    ["token_cost=0:1:2", "token_cost_per_1k", "token_cost_per_1k=a:b:c", "token_cost_per_1k=0:1",
     "token_cost_per_1k=0:1:0", "token_cost_per_1k=-1", "em_weight=0"],
)  # fmt: skip
def test_bad_sweep_specs_are_rejected_with_the_flag_named(text):
    """Unknown fields, malformed ranges and negative weights are usage errors."""
    with pytest.raises(ValueError, match="--sweep"):
        Sweep.parse(text)


def test_sweep_names_em_weight_points_by_field():
    """Token-cost points are `sweep:<cost>`; em_weight points say so."""
    names = [n for n, _ in Sweep.parse("em_weight=2").weights(CONFIG.reward)]
    assert names == ["sweep:em_weight=2"]


@pytest.mark.parametrize(
    ("text", "bound"),
    [
        ("42", RangeBound(offset=42)),
        ("2025-12-01T00:00:00Z", RangeBound(timestamp_ms=1_764_547_200_000)),
        ("2025-12-01T00:00:00", RangeBound(timestamp_ms=1_764_547_200_000)),
    ],
)
def test_range_bounds_are_offsets_or_iso_times(text, bound):
    """An integer is an offset; an ISO time without zone is UTC."""
    assert RangeBound.parse(text) == bound


@pytest.mark.parametrize("text", ["-1", "yesterday"])
def test_bad_range_bounds_are_rejected(text):
    """Negative offsets and unparseable times are errors."""
    with pytest.raises(ValueError, match=r"offset|ISO"):
        RangeBound.parse(text)


def test_file_events_read_plain_and_gzip_logs(tmp_path):
    """Lines of plain and .gz logs become raw events without key, numbered per file."""
    plain = tmp_path / "a.jsonl"
    plain.write_text("\n".join(LINES[:2]) + "\n\n")
    events = list(file_events([plain]))
    assert [(e.position, e.key) for e in events] == [(1, None), (2, None)]


def test_default_partition_matches_kafka_python():
    """Segments go where kafka-python's (and Java's) default partitioner sends their key."""

    class Cluster:
        def topics(self):
            return {"t"}

        def partitions_for_topic(self, _):
            return set(range(6))

        def available_partitions_for_topic(self, _):
            return set(range(6))

    partitioner = DefaultPartitioner()
    for segment in ["a", "b", "math/gsm8k/r1-distill-qwen-7b", "*"]:
        key = segment.encode()
        assert default_partition(segment, 6) == partitioner.partition(
            "t", key, key, None, None, Cluster()
        )


def test_exported_checkpoints_restore_into_cores_holding_each_segment_once(tmp_path):
    """Warm start: one checkpoint per partition, each segment in exactly one of them.

    Restored, each segment's policy and stats live in the partition that owns it, and the
    learned request_ids in every one.
    """
    result = replay(raw(LINES), CONFIG)
    assert result.core is not None
    files = export_checkpoints(result.core, tmp_path, written_at=101.0)
    assert len(files) == CONFIG.kafka.partitions
    store = DirCheckpointStore(tmp_path)
    owners = {}
    for partition in range(CONFIG.kafka.partitions):
        checkpoint = store.load(CONFIG.kafka.events_topic, partition)
        assert checkpoint is not None
        assert checkpoint.offset == 0
        core = ControllerCore(CONFIG)
        core.restore(checkpoint.state)
        assert core.join.has_joined("r1")
        for segment in core.segments:
            owners.setdefault(segment, []).append(partition)
            assert core.policies[segment] == result.core.policies[segment]
    assert owners == {s: [default_partition(s, CONFIG.kafka.partitions)] for s in ("a", "b")}
