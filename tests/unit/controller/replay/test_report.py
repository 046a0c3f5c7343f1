"""Replay's HTML report on the hand-written log (conftest): one row per policy and estimator."""

from __future__ import annotations

import re

import pytest

from stopbandit.controller.ope import ESTIMATORS
from stopbandit.controller.replay.report import write_report

ROW = re.compile(r"<tr><td>([^<]*)</td><td>([^<]*)</td>")


@pytest.fixture(scope="module")
def page(document, tmp_path_factory):
    """The report's index.html."""
    return write_report(document, tmp_path_factory.mktemp("report")).read_text()


def test_the_report_tables_every_registered_estimator_of_every_policy(document, page):
    """Each table (overall, then each segment) lists, per policy, every estimator in order."""
    tables = page.split("<table>")[1:]
    assert len(tables) == 1 + len(document["segments"])
    for table in tables:
        rows = ROW.findall(table)
        names = [e.name for e in ESTIMATORS.for_log(traced=False)]  # the log has no traces
        expected = [(n, e) for n in ("logged", "fixed:0.5", "fixed:1") for e in names]
        assert rows == expected


def test_the_report_embeds_both_plots(page):
    """The frontier and the arms are drawn (from the primary estimator) and embedded."""
    assert page.count("data:image/png;base64,") == 2
