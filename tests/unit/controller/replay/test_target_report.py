"""The replay report's target section: the calibration plotted, λ and the arms stated."""

from __future__ import annotations

from stopbandit.controller.replay.target_report import target_sections

TARGET = {
    "name": "target:token_reduction=30",
    "metric": "token_reduction",
    "target": 30.0,
    "lambda": 0.0825,
    "achieved": 34.5,
    "reachable": True,
    "greedy": {"a": 0.8, "b": 0.95},
    "pmf": {"a": [0.1, 0.9], "b": [0.0, 1.0]},
    "curve": [[0.01, 5.0], [0.1, 34.5], [1.0, 50.0]],
    "online_path": [],
}


def test_no_target_no_section(tmp_path) -> None:
    """Without `replay --target` the report is unchanged."""
    assert target_sections({"target": None}, tmp_path) == []
    assert not (tmp_path / "target.png").exists()


def test_section_states_lambda_and_arms_with_the_plot(tmp_path) -> None:
    """λ, the achieved figure and each segment's arm, and the curve as an embedded PNG."""
    html = "".join(target_sections({"target": TARGET}, tmp_path))
    assert "λ = 0.0825" in html
    assert "34.50 pts" in html
    assert "a 0.8, b 0.95" in html
    assert "data:image/png;base64," in html
    assert (tmp_path / "target.png").stat().st_size > 0


def test_replay_in_target_mode_plots_its_lambda_path(tmp_path) -> None:
    """With the replay's own λ path the plot gains its second panel (a wider PNG)."""
    target_sections({"target": TARGET}, tmp_path)
    narrow = (tmp_path / "target.png").stat().st_size
    path = [[100.0, 0.02, 10.0], [110.0, 0.03, 20.0], [120.0, 0.05, 28.0]]
    target_sections({"target": {**TARGET, "online_path": path}}, tmp_path)
    assert (tmp_path / "target.png").stat().st_size > narrow
