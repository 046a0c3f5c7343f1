"""Evaluation of a hand-written log with counterfactual traces: the estimators that read them.

Arms 0.5 and 1 (conftest's config: reward 2 EM - 0.01 tokens). Segment a (pmf 0.25 / 0.75):
r1 at 1 (EM 1) with a trace (0.5: EM 0), r2 at 0.5 (EM 1), r3 at 1 (EM 0) with a trace
(0.5: EM 1). Segment b (pmf 0.5 / 0.5): r4 at 1 (EM 1) with a trace (0.5: EM 1), r5 at 1 (EM 1)
without one.
"""

from __future__ import annotations

import json
import re

import pytest

from stopbandit.controller.commands.replay import print_summary
from stopbandit.controller.config import load_config
from stopbandit.controller.ope import ESTIMATORS
from stopbandit.controller.replay.document import build_document
from stopbandit.controller.replay.evaluate import evaluate
from stopbandit.controller.replay.feed import RawEvent, replay
from stopbandit.controller.replay.report import write_report
from stopbandit.controller.replay.settings import ReplaySettings
from stopbandit.controller.replay.targets import fixed_targets, logged_target

CONFIG = load_config(None, arms=[0.5, 1.0], reference_arm=1.0, default_arm=1.0,
                     reward={"em_weight": 2.0, "token_cost_per_1k": 10.0})  # fmt: skip
# Hand-computed values on cells of a row or two: every observed cell estimated.
POINT = ReplaySettings(min_ess=0.0)
PMF = {"a": [[0.5, 0.25], [1.0, 0.75]], "b": [[0.5, 0.5], [1.0, 0.5]]}


def pair(rid, segment, played, result, trace=None):
    """A decision at `played` (threshold, p) and its outcome `result` (em, tokens), traced."""
    (threshold, probability), (em, tokens) = played, result
    decision = {"type": "decision", "v": 1, "request_id": rid, "ts": 100.0, "segment": segment,
                "threshold": threshold, "probability": probability, "policy_version": 1,
                "pmf": PMF[segment]}  # fmt: skip
    outcome = {"type": "outcome", "v": 1, "request_id": rid, "ts": 101.0, "segment": segment,
               "em": em, "tokens": tokens}  # fmt: skip
    if trace is not None:
        outcome["counterfactual"] = trace
    return [json.dumps(decision), json.dumps(outcome)]


LINES = [
    *pair("r1", "a", (1.0, 0.75), (1.0, 300), [[0.5, 0.0, 100]]),
    *pair("r2", "a", (0.5, 0.25), (1.0, 100)),
    *pair("r3", "a", (1.0, 0.75), (0.0, 400), [[0.5, 1.0, 200]]),
    *pair("r4", "b", (1.0, 0.5), (1.0, 200), [[0.5, 1.0, 50]]),
    *pair("r5", "b", (1.0, 0.5), (1.0, 300)),
]


def raw(lines):
    """Lines as raw events of a file."""
    return [RawEvent("traces.jsonl", i + 1, None, line.encode()) for i, line in enumerate(lines)]


@pytest.fixture(scope="module")
def traced():
    """The traced log, its evaluation and its document."""
    log = replay(raw(LINES), CONFIG, learn=False)
    targets = [logged_target(), *fixed_targets(log)]
    evaluation = evaluate(log, targets, CONFIG.reward, settings=POINT)
    document = build_document(
        log, evaluation, targets, CONFIG.reward,
        sources=["t"], publish_every=1000, folds=5, fold_seed=0, confidence=0.95,
    )  # fmt: skip
    return log, evaluation, document


def test_a_fixed_arm_is_estimated_directly_from_every_request_that_observed_it(traced):
    """Direct EM of 0.5: segment a 2/3 (r1-r3), b 1 (r4); by traffic 0.6 · 2/3 + 0.4 · 1 = 0.8.

    Of 1: a 1/2 (r1, r3), b 1 (r4, r5): 0.6 · 0.5 + 0.4 = 0.7.
    """
    _, evaluation, _ = traced
    assert evaluation.find("fixed:0.5", "direct").em.value == pytest.approx(0.8)
    assert evaluation.find("fixed:1", "direct").em.value == pytest.approx(0.7)
    assert evaluation.find("fixed:0.5", "direct", "a").em.value == pytest.approx(2 / 3)
    # Reward at 0.5: a (2·0-1, 2-1, 2-2)/3 = 0, b 2 - 0.5 = 1.5: 0.4 · 1.5 = 0.6.
    assert evaluation.find("fixed:0.5", "direct").reward.value == pytest.approx(0.6)


def test_graph_ips_weights_the_lowest_arm_by_the_segments_trace_share(traced):
    """P(0.5): a, τ = 1, so 1; b, τ = 1/2, so 0.5 + 0.5 · 0.5 = 0.75: (0 + 1 + 1 + 1/0.75) / 5."""
    _, evaluation, _ = traced
    assert evaluation.find("fixed:0.5", "ips_graph").em.value == pytest.approx(2 / 3)


def test_estimators_of_the_played_arm_ignore_the_traces(traced):
    """IPS, SNIPS and DR are what they are on the same log with its traces stripped."""
    _, evaluation, _ = traced
    plain_lines = [re.sub(r', "counterfactual": \[.*\]\]', "", line) for line in LINES]
    assert plain_lines != LINES
    plain_log = replay(raw(plain_lines), CONFIG, learn=False)
    assert plain_log.observations is None
    plain = evaluate(
        plain_log, [logged_target(), *fixed_targets(plain_log)], CONFIG.reward, settings=POINT
    )
    for name in ("logged", "fixed:0.5", "fixed:1"):
        for estimator in ("ips", "snips", "dr"):
            ours, theirs = evaluation.find(name, estimator), plain.find(name, estimator)
            for field in ("em", "tokens", "reward", "support", "warnings"):
                assert getattr(ours, field) == getattr(theirs, field), (name, estimator, field)
            assert theirs.observed is None


def test_each_estimate_says_how_much_of_its_target_was_observed(traced):
    """0.5 was seen on 4 of 5 requests (played once, traced thrice); 1 on 4, all played."""
    _, evaluation, _ = traced
    low = evaluation.find("fixed:0.5", "dr").observed
    assert (low.share, low.n, low.played, low.traced) == (0.8, 4.0, 1.0, 3.0)
    high = evaluation.find("fixed:1", "direct").observed
    assert (high.share, high.n, high.played, high.traced) == (0.8, 4.0, 4.0, 0.0)
    logged = evaluation.find("logged", "ips").observed
    assert (logged.share, logged.n) == (1.0, 5.0)


def test_the_document_lists_every_estimator_and_the_traces(traced):
    """All six estimators per policy, `observed` on each, and the trace counts in the input."""
    _, _, document = traced
    names = [p["estimator"] for p in document["policies"] if p["name"] == "fixed:0.5"]
    assert names == list(ESTIMATORS.names)
    assert all("observed" in p for p in document["policies"])
    assert document["segments"]["b"]["policies"][0]["observed"]["n"] == 2.0
    assert document["input"]["traces"] == {"kept": 3, "incomplete": 0, "dropped": {}}
    json.dumps(document, allow_nan=False)


def test_the_table_leads_with_graph_dr_and_shows_the_observed_share(traced, capsys, monkeypatch):
    """Graph DR leads, then the other five in order; a fixed arm's row counts its observations."""
    monkeypatch.setenv("COLUMNS", "250")
    _, _, document = traced
    print_summary(document)
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "policy" in line and "┃" in line)
    assert [cell.strip() for cell in header.split("┃")[1:-1]] == [
        "policy", "reward DR-G ± CI", "IPS", "SNIPS", "DR", "IPS-G", "Direct", "EM", "tokens",
        "ESS", "supp.", "obs.",
    ]  # fmt: skip
    row = next(line for line in out.splitlines() if "fixed:0.5" in line and "│" in line)
    assert row.split("│")[-2].strip() == "80% (4)"


def test_the_report_has_an_observed_column_and_counts_the_traces(traced, tmp_path):
    """The HTML tables gain `observed (traced)`, and the summary the traces kept and dropped."""
    _, _, document = traced
    page = write_report(document, tmp_path).read_text()
    assert page.count("<th>observed (traced)</th>") == 1 + len(document["segments"])
    assert "Counterfactual traces: 3 kept (0 incomplete), 0 dropped" in page
    assert "<td>80.0%: 4 (3)</td>" in page


def test_support_counts_what_traces_observed_for_the_estimators_that_read_them():
    """Traces count as support for the estimators that read them, not for DR.

    Segment a at 0.5: played once (r2, 1/0.25: ESS 1), observed thrice (r1 and r3 traced with
    P = 1, and r2: weights 1, 1, 4, ESS 36/18 = 2). With min_ess 2 the direct estimate and graph
    DR of fixed:0.5 in segment a are estimated; DR, which sees only the played arm, is bounded.
    """
    log = replay(raw(LINES), CONFIG, learn=False)
    evaluation = evaluate(
        log, fixed_targets(log), CONFIG.reward, settings=ReplaySettings(min_ess=2.0)
    )
    assert evaluation.find("fixed:0.5", "direct", "a").reward.interval == "wald"
    assert evaluation.find("fixed:0.5", "dr_graph", "a").reward.interval == "wald"
    dr = evaluation.find("fixed:0.5", "dr", "a")
    assert dr.reward.interval == "bounds"
    assert dr.reward.identified == pytest.approx(0.0)
    assert "barely played" in dr.warnings[0]
