"""An estimator registered once appears everywhere replay reports: estimates, JSON, table, HTML."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from structlog.testing import capture_logs

from stopbandit.controller.cli import main
from stopbandit.controller.ope import ESTIMATORS, Estimator
from stopbandit.controller.ope.intervals import wald_estimate
from stopbandit.controller.replay.evaluate import evaluate
from stopbandit.controller.replay.feed import replay
from stopbandit.controller.replay.settings import ReplaySettings
from stopbandit.controller.replay.targets import fixed_targets, logged_target

# Hand-computed values on cells of a row or two: every observed cell estimated (conftest).
POINT = ReplaySettings(min_ess=0.0)

CONFIG_YAML = """\
arms: [0.5, 1.0]
reference_arm: 1.0
default_arm: 1.0
reward: {em_weight: 2.0, token_cost_per_1k: 10.0}
replay: {min_ess: 0}
"""


def sample_mean(rows):
    """Trivial: the logged rows' mean outcome, whatever the target."""
    terms = np.asarray(rows.y, dtype=np.float64)
    return wald_estimate(
        terms, np.ones_like(terms), confidence=rows.confidence, warnings=(), estimator="mean"
    )


def direct_method(rows):
    """The reward model's value of the target: (1/n) Σ_i Σ_a π(a|x_i) q̂(x_i, a)."""
    terms = np.einsum("ik,ik->i", rows.target_pmf, rows.q_hat)
    return wald_estimate(
        terms, rows.weights, confidence=rows.confidence, warnings=rows.warnings, estimator="dm"
    )


@pytest.fixture
def registered():
    """`mean` and `dm` registered after the shipped estimators, for one test."""
    before = ESTIMATORS.names
    ESTIMATORS.register(Estimator("mean", "MEAN", sample_mean, "the logged mean outcome"))
    ESTIMATORS.register(
        Estimator(
            "dm",
            "DM",
            direct_method,
            "direct method: the reward model's value",
            needs_target_pmf=True,
            needs_reward_model=True,
        )
    )
    yield
    ESTIMATORS.unregister("dm")
    ESTIMATORS.unregister("mean")
    assert ESTIMATORS.names == before


def cli(capsys, *args):
    """Run `stopbandit` in this process; return its stdout."""
    with capture_logs():  # replay's log lines would land on stdout, next to the JSON
        assert main([str(a) for a in args]) == 0
    return capsys.readouterr().out


@pytest.mark.usefixtures("registered")
def test_a_registered_estimator_is_computed_for_every_target(log, config, rewards):
    """`evaluate` runs it on every target and scope; here, the mean of the logged rewards."""
    evaluation = evaluate(
        log, [logged_target(), *fixed_targets(log)], config.reward, settings=POINT
    )
    for name in ("logged", "fixed:0.5", "fixed:1"):
        assert evaluation.find(name, "mean").reward.value == pytest.approx(np.mean(rewards))
    assert evaluation.find("fixed:0.5", "mean", "a").reward.n == 3
    assert [e.estimator for e in evaluation.overall[:5]] == ["ips", "snips", "dr", "mean", "dm"]


@pytest.mark.usefixtures("registered")
def test_a_registered_estimator_reading_the_pmf_is_unavailable_without_logged_pmfs(
    config, lines, raw, decision, outcome
):
    """The logged policy's pmf is the logged pmfs: without them, no estimate and a warning."""
    extra = [decision("r8", "b", 1.0, 0.5), outcome("r8", "b", 0.0, 30)]  # p < 1, no pmf
    log = replay(raw(lines + extra), config, learn=False)
    evaluation = evaluate(
        log, [logged_target(), *fixed_targets(log)], config.reward, settings=POINT
    )
    logged = evaluation.find("logged", "dm")
    assert math.isnan(logged.reward.value)
    assert logged.warnings == (
        "some decisions carry no pmf: DM of the logged policy is unavailable",
    )
    assert not math.isnan(evaluation.find("logged", "mean").reward.value)
    assert not math.isnan(evaluation.find("fixed:1", "dm").reward.value)


@pytest.mark.usefixtures("registered")
def test_a_registered_estimator_reaches_the_json_the_table_and_the_report(
    capsys, monkeypatch, tmp_path, lines
):
    """`stopbandit replay`: its entries in --json, its column in the table, its rows in HTML."""
    monkeypatch.setattr("stopbandit.controller.commands.replay.configure_logging", lambda *_: None)
    monkeypatch.setenv("COLUMNS", "200")
    log_path, config_path = tmp_path / "events.jsonl", tmp_path / "config.yaml"
    log_path.write_text("\n".join(lines) + "\n")
    config_path.write_text(CONFIG_YAML)
    args = ("replay", log_path, "--config", config_path, "--no-learned")
    document = json.loads(cli(capsys, *args, "--json", "--report", tmp_path / "report"))
    names = [(p["name"], p["estimator"]) for p in document["policies"]]
    estimators = ("ips", "snips", "dr", "mean", "dm")
    assert names == [(n, e) for n in ("logged", "fixed:0.5", "fixed:1") for e in estimators]
    (mean,) = [
        p for p in document["policies"] if p["name"] == "fixed:1" and p["estimator"] == "mean"
    ]
    assert mean["reward"] == pytest.approx(-0.9)
    table = cli(capsys, *args)
    header = next(line for line in table.splitlines() if "policy" in line and "┃" in line)
    assert [cell.strip() for cell in header.split("┃")[1:-1]] == [
        "policy", "reward DR ± CI", "IPS", "SNIPS", "MEAN", "DM", "EM", "tokens", "ESS", "supp.",
    ]  # fmt: skip
    page = (tmp_path / "report" / "index.html").read_text()
    assert page.count("<td>mean</td>") == page.count("<td>dr</td>") == 3 * 3
