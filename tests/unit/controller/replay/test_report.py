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
    tables = page.split("<h2>overall</h2>")[1].split("<table>")[1:]
    assert len(tables) == 1 + len(document["segments"])
    for table in tables:
        rows = ROW.findall(table)
        names = [e.name for e in ESTIMATORS.for_log(traced=False)]  # the log has no traces
        expected = [(n, e) for n in ("logged", "fixed:0.5", "fixed:1") for e in names]
        assert rows == expected


def test_the_report_embeds_both_plots(page):
    """The frontier and the arms are drawn (from the primary estimator) and embedded."""
    assert page.count("data:image/png;base64,") == 2


def test_the_report_opens_with_the_recommendation(document, page):
    """The first section says what to deploy (or to keep the logged policy) and why."""
    assert page.index("<h2>recommendation</h2>") < page.index("<img")
    found = document["recommendation"]
    verdict = "Keep the logged policy" if found["policy"] is None else f"Deploy {found['policy']}"
    assert f"<b>{verdict}</b>" in page


def test_each_policy_shows_its_warnings_once_over_its_estimators_rows(page):
    """One warnings cell per policy, spanning its estimators' rows, the bounds note first."""
    overall = page.split("<h2>overall</h2>")[1].split("</table>")[0]
    n_estimators = len(ESTIMATORS.for_log(traced=False))
    assert overall.count(f"<td class=w rowspan={n_estimators}>") == 3  # logged, fixed:0.5, fixed:1
    cell = overall.split("fixed:0.5</td>")[1].split("<td class=w")[1].split("</td>")[0]
    assert cell.split(">", 1)[1].startswith("bounds, not an interval")
