"""The demo's PNG and summary in target mode: λ's path gets its own panel."""

from __future__ import annotations

from stopbandit.controller.demo.view import save_plot, summary_table
from stopbandit.controller.sim.fleet import Progress, SegmentFigures

TARGET = {
    "metric": "token_reduction",
    "target": 45.0,
    "lambda": 0.085,
    "achieved": 46.5,
    "updates": 3,
    "path": [[1.0, 0.03, 10.0], [2.0, 0.06, 40.0], [3.0, 0.085, 46.5]],
}


def progress() -> Progress:
    """Two publish windows of one segment."""
    window = SegmentFigures(n=10, em=9.0, tokens=5000.0, reference_em=9.0, reference_tokens=9000.0)
    return Progress(
        interactions=20,
        segments={"s": window},
        greedy={"s": 0.9},
        versions={"s": 1},
        history=[(10, {"s": window}), (20, {"s": window})],
    )


def test_target_mode_adds_the_lambda_panel(tmp_path) -> None:
    """With a target report the PNG is taller (three panels) than without."""
    plain = save_plot(progress(), tmp_path / "plain.png")
    targeted = save_plot(progress(), tmp_path / "target.png", target=TARGET)
    assert plain is not None
    assert targeted is not None
    from matplotlib import image  # noqa: PLC0415 - heavy

    assert image.imread(targeted).shape[0] > image.imread(plain).shape[0]


def test_summary_table_states_lambda() -> None:
    """The closing table has a target row with λ and the measured value."""
    result = {
        "token_reduction": 0.46,
        "em_drop_pts": 0.5,
        "gap_closed": 0.9,
        "online": {"token_reduction": 0.4, "em_drop_pts": 0.3},
        "target": {k: v for k, v in TARGET.items() if k != "path"},
    }
    table = summary_table(result)
    cells = [str(c) for column in table.columns for c in column._cells]
    assert "λ = 0.085" in cells
    assert any("target 45.0" in c for c in cells)
