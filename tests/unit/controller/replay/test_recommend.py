"""The recommendation: the best policy whose reward's lower bound beats the logged policy."""

from __future__ import annotations

import pytest

from stopbandit.controller.replay.recommend import recommend, weights_label

WEIGHTS = {"em_weight": 1.0, "token_cost_per_1k": 0.02}


def policy(name, reward, em, tokens, interval="wald"):
    """A document policy of the DR estimator: each outcome a (value, low, high) triple."""
    return {
        "name": name, "estimator": "dr", "interval": interval, "identified": 1.0,
        "reward": reward[0], "ci_low": reward[1], "ci_high": reward[2],
        "em": em[0], "em_ci_low": em[1], "em_ci_high": em[2],
        "tokens": tokens[0], "tokens_ci_low": tokens[1], "tokens_ci_high": tokens[2],
    }  # fmt: skip


def document(policies, segments=None):
    """A replay document holding `policies` overall (and `segments`)."""
    return {
        "settings": {"reward": WEIGHTS},
        "policies": policies,
        "segments": {s: {"policies": p} for s, p in (segments or {}).items()},
        "sweep": [],
    }


LOGGED = policy("logged", (0.60, 0.59, 0.61), (0.70, 0.69, 0.71), (5000, 4900, 5100))
CHEAP = policy("fixed:0.9", (0.65, 0.62, 0.68), (0.71, 0.68, 0.74), (3000, 2900, 3100))
BETTER = policy("fixed:0.95", (0.70, 0.58, 0.82), (0.75, 0.6, 0.9), (2500, 2000, 3000))
BOUNDED = policy("fixed:1", (0.5, 0.2, 0.8), (0.6, 0.3, 0.9), (6000, 100, 9000), "bounds")


def test_the_best_policy_whose_lower_bound_beats_the_logged_reward():
    """fixed:0.95 has the higher estimate but its lower end 0.58 does not beat 0.60."""
    found = recommend(document([LOGGED, CHEAP, BETTER, BOUNDED]), "dr")
    assert found["policy"] == "fixed:0.9"
    assert found["reward"] == [0.65, 0.62, 0.68]
    assert found["em"] == [0.71, 0.68, 0.74]
    assert found["logged_reward"] == 0.60
    assert "0.6200 beats the logged policy's 0.6000" in found["reason"]


def test_nothing_qualifies_keep_the_logged_policy():
    """Only wide intervals and bounds: the logged policy stays, with the reason."""
    found = recommend(document([LOGGED, BETTER, BOUNDED]), "dr")
    assert found["policy"] is None
    assert found["reason"].endswith("keep the logged policy")


def test_the_guardrail_excludes_a_policy_confidently_below_the_reference_arm():
    """In segment s fixed:0.9's EM ends at 0.70, below the reference's 0.80 - 5 points."""
    reference = policy("fixed:1", (0.5, 0.4, 0.6), (0.82, 0.80, 0.84), (9000, 8000, 10000))
    low = policy("fixed:0.9", (0.7, 0.6, 0.8), (0.68, 0.66, 0.70), (2000, 1900, 2100))
    segments = {"s": [low, reference]}
    docs = document([LOGGED, CHEAP], segments)
    found = recommend(docs, "dr", reference="fixed:1", drop_pts={"s": 5.0})
    assert found["policy"] is None
    assert found["guardrail_excluded"] == ["fixed:0.9"]
    assert recommend(docs, "dr", reference="fixed:1", drop_pts={"s": 15.0})["policy"] == "fixed:0.9"


def test_under_other_weights_rewards_come_from_em_and_tokens_ends():
    """At cost 0: reward = EM; its interval the EM's; the logged reward 0.70 to beat."""
    weights = {"em_weight": 1.0, "token_cost_per_1k": 0.0}
    found = recommend(document([LOGGED, CHEAP, BETTER]), "dr", weights=weights)
    assert found["policy"] is None  # 0.68 and 0.6 do not beat 0.70
    weights = {"em_weight": 1.0, "token_cost_per_1k": 0.1}
    found = recommend(document([LOGGED, CHEAP, BETTER]), "dr", weights=weights)
    # logged: 0.70 - 0.5 = 0.20; fixed:0.9: 0.71 - 0.3 = 0.41 (low 0.68 - 0.31 = 0.37);
    # fixed:0.95: 0.75 - 0.25 = 0.50 (low 0.6 - 0.3 = 0.30, high 0.9 - 0.2 = 0.70): the best.
    assert found["policy"] == "fixed:0.95"
    assert found["reward"] == pytest.approx([0.50, 0.30, 0.70])
    assert weights_label(weights) == "em_weight=1, token_cost_per_1k=0.1"
