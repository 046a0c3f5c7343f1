"""Warnings ranked by the share of the target's mass they concern."""

from __future__ import annotations

import numpy as np
import pytest

from stopbandit.controller.replay.ranking import cell_mass, rank, share_of, shown


def test_a_cell_warning_weighs_the_targets_mass_on_that_cell():
    """Group 1 arm 0 holds 1 of 4 rows' mass: 0.25."""
    pmf = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    mass = cell_mass(pmf, np.array([0, 0, 1, 1]), 2)
    assert share_of("missing support: group 1 arm 0 never logged (target mass 0.5)", mass) == 0.25


def test_whole_estimate_warnings_weigh_one_and_stated_shares_weigh_theirs():
    """Low ESS touches everything; "no support for 5.0%" touches 5%; anything else 0."""
    assert share_of("low effective sample size: ESS 3.0 < 30.0 (n = 100)", None) == 1.0
    assert share_of("no support for 5.0% of the target's mass", None) == pytest.approx(0.05)
    assert share_of("3 traces leave out arms below the played one", None) == 0.0


def test_rank_puts_the_first_ones_first_then_the_largest_shares_without_repeats():
    """The bounds note leads; the rest by share, ties in their order; repeats merged."""
    warnings, shares = rank([("a", 0.1), ("b", 0.5), ("c", 0.1), ("b", 0.2)], first=[("note", 0.3)])
    assert warnings == ("note", "b", "a", "c")
    assert shares == (0.3, 0.5, 0.1, 0.1)


def test_shown_keeps_the_first_few_and_counts_the_rest():
    """Three of five shown, two left out."""
    assert shown(list("abcde"), 3) == (["a", "b", "c"], 2)
