"""Scenarios with the token_budget knob: arms, the min(budget, natural) token model, the file.

The statistical checks use fixed seeds and 4.5 standard errors, as in test_requests.py.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stopbandit.controller.config import RewardConfig
from stopbandit.controller.sim.requests import Requests
from stopbandit.controller.sim.scenario import (
    SHIPPED_DIR,
    Scenario,
    Truth,
    budget_token_fractions,
    load_scenario,
)

Z = 4.5
BUDGETS = [256, 1024, 4096]
BASE, CV = 1500.0, 0.6


def _curve(em: list[float], base: float = BASE, cv: float = CV) -> dict[str, list[float]]:
    fractions = budget_token_fractions([float(b) for b in BUDGETS], base, cv)
    return {str(b): [round(float(f), 3), p] for b, f, p in zip(BUDGETS, fractions, em, strict=True)}


def _scenario(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": "budgets",
        "knob": "token_budget",
        "arms": BUDGETS,
        "reference_arm": 4096,
        "segments": [
            {
                "key": "math",
                "traffic": 1.0,
                "base_tokens": BASE,
                "token_cv": CV,
                "curve": _curve([0.3, 0.7, 0.8]),
            }
        ],
    }
    document.update(changes)
    return document


def test_budget_fractions_are_the_mean_of_the_cut_lognormal() -> None:
    """E[min(b, N)] / mean matches a large Monte Carlo sample of N (mean 1500, cv 0.6)."""
    rng = np.random.default_rng(1)
    sigma = math.sqrt(math.log1p(CV**2))
    natural = BASE * np.exp(-(sigma**2) / 2 + sigma * rng.standard_normal(400_000))
    expected = [float(np.mean(np.minimum(b, natural))) / BASE for b in BUDGETS]
    computed = budget_token_fractions([float(b) for b in BUDGETS], BASE, CV)
    assert computed == pytest.approx(expected, abs=0.003)
    assert budget_token_fractions([100.0, 4000.0], 1000.0, 0.0).tolist() == [0.1, 1.0]


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        pytest.param({"arms": [0.5, 1024, 4096]}, "arms.0", id="a threshold among budgets"),
        pytest.param({"arms": [256.5, 1024, 4096]}, "arms.0", id="fractional budget"),
        pytest.param({"knob": "confidence"}, "arms.0", id="budgets under the confidence knob"),
        pytest.param({"reference_arm": 5000}, "reference_arm", id="reference no arm"),
    ],
)
def test_arms_follow_the_knob(changes: dict[str, Any], where: str) -> None:
    """A scenario's arms obey its knob, like the config's and the policy's."""
    with pytest.raises(ValueError, match=where):
        Scenario.model_validate(_scenario(**changes))


def test_token_fractions_must_say_what_the_token_model_gives() -> None:
    """A budget curve claiming fewer tokens than min(budget, natural) produces is refused."""
    curve = _curve([0.3, 0.7, 0.8])
    curve["1024"] = [0.3, 0.7]
    segment = {**_scenario()["segments"][0], "curve": curve}
    with pytest.raises(ValueError, match=r"token fraction 0\.3 at budget 1024"):
        Scenario.model_validate(_scenario(segments=[segment]))


@pytest.mark.parametrize("seed", [2, 3])
def test_tokens_are_the_natural_length_cut_at_the_budget(seed: int) -> None:
    """Per request tokens never exceed the budget and rise with it; means match the truth."""
    scenario = Scenario.model_validate(_scenario(trace={"share": 1.0, "coupling": 0.8}))
    truth = Truth(scenario)
    requests = Requests(truth, seed)
    n = 20_000
    tokens = np.zeros((n, len(BUDGETS)))
    for i in range(n):
        request = requests.draw(i)
        top = requests.outcome(request, len(BUDGETS) - 1)
        assert top.counterfactual is not None
        spent = [t for _, _, t in top.counterfactual] + [top.tokens]
        assert all(t <= b for t, b in zip(spent, BUDGETS, strict=True))
        assert spent == sorted(spent)
        # The played arm's tokens are the same draw as the trace's entry for that arm.
        assert requests.outcome(request, 1).tokens == spent[1]
        tokens[i] = spent
    means, sds = tokens.mean(axis=0), tokens.std(axis=0)
    # int() truncates: half a token below the expected mean.
    for mean, sd, expected in zip(means, sds, truth.tokens[0], strict=True):
        assert abs(mean + 0.5 - expected) < Z * sd / math.sqrt(n) + 0.5


def test_the_shipped_budget_scenario_has_segments_with_different_best_budgets() -> None:
    """token-budget.yaml loads by name, and its oracle picks several budgets at cost 0.02."""
    scenario = load_scenario(Path("token-budget"))
    assert scenario == load_scenario(SHIPPED_DIR / "token-budget.yaml")
    assert scenario.knob == "token_budget"
    assert scenario.reference_arm == max(scenario.arms)
    truth = Truth(scenario)
    best = {truth.arms[k] for k in truth.oracle_arms(RewardConfig(token_cost_per_1k=0.02))}
    assert len(best) >= 3
    # EM rises with the budget on every segment (budget forcing's curves flatten, never fall).
    assert np.all(np.diff(truth.em, axis=1) >= 0.0)


def test_an_unknown_scenario_name_is_an_error_naming_it() -> None:
    """A name that is neither a file nor a shipped scenario fails to read, naming it."""
    with pytest.raises(ValueError, match="no-such-scenario"):
        load_scenario(Path("no-such-scenario"))
