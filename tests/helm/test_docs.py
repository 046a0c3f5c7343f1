"""The operations guide, the Grafana dashboard and the chart README agree with the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from stopbandit.controller.daemon.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"
CHART_README = ROOT / "helm" / "stopbandit" / "README.md"
METRIC_NAME = re.compile(r"\bstopbandit_[a-z0-9_]+")
# What Prometheus scrapes for each metric type of prometheus_client.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def _families() -> dict[str, set[str]]:
    """Each metric family of controller/daemon/metrics.py, with the series names it exposes."""
    return {
        family.name: {family.name + suffix for suffix in SUFFIXES[family.type]}
        for family in Metrics().registry.collect()
    }


def _family_of(series: str, families: dict[str, set[str]]) -> str | None:
    return next((name for name, exposed in families.items() if series in exposed), None)


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    queries.extend(
        variable["query"]["query"]
        for variable in dashboard["templating"]["list"]
        if isinstance(variable.get("query"), dict)
    )
    return queries


def test_metric_suffixes_cover_every_metric_type():
    """Every metric type in metrics.py has a known exposition, so the checks below are complete."""
    assert {family.type for family in Metrics().registry.collect()} <= SUFFIXES.keys()


def test_dashboard_queries_only_metrics_that_exist():
    """Every series the dashboard queries is exported by controller/daemon/metrics.py."""
    families = _families()
    queries = _dashboard_queries()
    assert len(queries) >= len(families)
    for query in queries:
        for series in METRIC_NAME.findall(query):
            assert _family_of(series, families), f"{series} (in {query!r}) is not exported"


def test_dashboard_shows_every_metric():
    """No metric of the daemon is missing from the dashboard."""
    families = _families()
    shown = {
        _family_of(series, families)
        for query in _dashboard_queries()
        for series in METRIC_NAME.findall(query)
    }
    assert shown >= families.keys()


def test_dashboard_panels_are_well_formed():
    """Panels have unique ids, a Prometheus target each, and do not overlap."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(t["datasource"]["type"] == "prometheus" for t in panel["targets"])
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))


def test_operations_guide_names_only_metrics_that_exist_and_all_of_them():
    """The guide's table and alert rules use real series names and cover every metric."""
    families = _families()
    text = OPERATIONS.read_text()
    mentioned = set()
    # A table may name a histogram by its family; a query never can, and the
    # alert rules are checked by the same rule as the dashboard.
    histograms = {f.name for f in Metrics().registry.collect() if f.type == "histogram"}
    for series in METRIC_NAME.findall(text):
        family = series if series in histograms else _family_of(series, families)
        assert family, f"{series} in operations.md is not exported"
        mentioned.add(family)
    assert mentioned == families.keys()


def test_operations_guide_alert_rules_parse():
    """The example alert rules are a Prometheus rule file: groups of named rules with an expr."""
    blocks = re.findall(r"```yaml\n(.*?)```", OPERATIONS.read_text(), flags=re.DOTALL)
    (rules_block,) = [b for b in blocks if "groups:" in b]
    rules = [rule for group in yaml.safe_load(rules_block)["groups"] for rule in group["rules"]]
    assert len(rules) >= 5
    for rule in rules:
        assert rule["alert"]
        assert rule["expr"].strip()
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}


def _leaf_paths(node: object, prefix: str = "") -> list[str]:
    if isinstance(node, dict) and node:
        return [p for k, v in node.items() for p in _leaf_paths(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


def _schema_config_paths() -> list[str]:
    schema = json.loads((ROOT / "helm" / "stopbandit" / "values.schema.json").read_text())
    config = schema["properties"]["config"]["properties"]
    paths = []
    for key, sub in config.items():
        if "properties" in sub:
            paths.extend(f"config.{key}.{name}" for name in sub["properties"])
        else:
            paths.append(f"config.{key}")
    return paths


@pytest.mark.parametrize("source", ["values.yaml", "values.schema.json config"])
def test_chart_readme_documents_every_value(source: str):
    """Each value of values.yaml, and each key `config` accepts, has a row in the chart README."""
    readme = CHART_README.read_text()
    if source == "values.yaml":
        values = yaml.safe_load((ROOT / "helm" / "stopbandit" / "values.yaml").read_text())
        paths = _leaf_paths(values)
    else:
        paths = _schema_config_paths()
    missing = [path for path in paths if f"`{path}`" not in readme]
    assert not missing, f"undocumented in helm/stopbandit/README.md: {missing}"
