"""Replay's targets: the sweep's specs, names, and agreement with the learned greedy policy."""

from __future__ import annotations

import numpy as np
import pytest

from stopbandit.controller.replay.feed import replay
from stopbandit.controller.replay.targets import Sweep, greedy_under


def test_a_sweep_point_at_the_configured_weight_is_the_learned_greedy_policy(config, lines, raw):
    """At the configured weight, a sweep point picks what the core published.

    The sweep applies the builder's rule to the final estimates.
    """
    result = replay(raw(lines * 20), config)  # duplicates skipped; the same 5 interactions
    assert result.core is not None
    greedy = greedy_under(result.core, config.reward)
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


def test_sweep_names_em_weight_points_by_field(config):
    """Token-cost points are `sweep:<cost>`; em_weight points say so."""
    names = [n for n, _ in Sweep.parse("em_weight=2").weights(config.reward)]
    assert names == ["sweep:em_weight=2"]
