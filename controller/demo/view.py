"""What the demo shows: a live table per segment, the closing summary, and a PNG plot.

Every figure is an expected value under the scenario's truth (see
`controller.sim.fleet`), compared with the reference arm ("never stop early").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

from stopbandit.streams.arms import arm_label

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import RenderableType

    from stopbandit.controller.sim.fleet import Progress, SegmentFigures


def _saving(figures: SegmentFigures) -> float:
    return 1.0 - figures.tokens / figures.reference_tokens if figures.reference_tokens else 0.0


def progress_table(progress: Progress, total: int, elapsed_s: float) -> RenderableType:
    """The live view: per segment the greedy arm (threshold or budget), EM and tokens vs the ref."""
    rate = progress.interactions / elapsed_s if elapsed_s > 0 else 0.0
    table = Table(
        "segment",
        "greedy",
        "requests",
        "EM",
        "EM ref",
        "tokens",
        "tokens ref",
        "saving",
        title=f"{progress.interactions:,} / {total:,} requests, {rate:,.0f}/s",
    )
    totals_em = totals_ref_em = totals_tokens = totals_ref_tokens = 0.0
    for segment, figures in progress.segments.items():
        n = max(figures.n, 1)
        table.add_row(
            segment,
            arm_label(progress.greedy[segment])
            + ("" if progress.versions[segment] else " (fallback)"),
            f"{figures.n:,}",
            f"{figures.em / n:.3f}",
            f"{figures.reference_em / n:.3f}",
            f"{figures.tokens / n:,.0f}",
            f"{figures.reference_tokens / n:,.0f}",
            f"{_saving(figures):.1%}",
        )
        totals_em += figures.em
        totals_ref_em += figures.reference_em
        totals_tokens += figures.tokens
        totals_ref_tokens += figures.reference_tokens
    n = max(progress.interactions, 1)
    saving = 1.0 - totals_tokens / totals_ref_tokens if totals_ref_tokens else 0.0
    table.add_section()
    table.add_row(
        "all",
        "",
        f"{progress.interactions:,}",
        f"{totals_em / n:.3f}",
        f"{totals_ref_em / n:.3f}",
        f"{totals_tokens / n:,.0f}",
        f"{totals_ref_tokens / n:,.0f}",
        f"{saving:.1%}",
    )
    table.caption = (
        f"EM change {100.0 * (totals_em - totals_ref_em) / n:+.2f} pts, token saving {saving:.1%}. "
        "Expected per request under the scenario; ref: never stopping early"
    )
    return table


def summary(report: dict[str, Any], plot: Path | None) -> dict[str, Any]:
    """The demo's closing figures as one JSON-ready object.

    The headline figures evaluate the final greedy thresholds on the scenario's
    truth, exactly as `stopbandit simulate` reports `final_policy`.
    """
    final = report["final_policy"]
    return {
        "scenario": report["scenario"],
        "seed": report["seed"],
        "interactions": report["interactions"],
        "publish_every": report["publish_every"],
        "token_reduction": final["token_reduction"],
        "em_drop_pts": final["em_drop_pts"],
        "gap_closed": final["gap_closed"],
        "reward": final["reward"],
        "segments": final["arms"],
        "online": report["online"],
        "nodes": report["nodes"],
        "publish_rounds": report["publish_rounds"],
        "daemon_events": report["daemon_events"],
        "emitter": report["emitter"],
        "bootstrap_servers": report["bootstrap_servers"],
        "elapsed_s": report["elapsed_s"],
        "stopped_early": report["stopped_early"],
        "plot": str(plot) if plot is not None else None,
        # Target mode: where λ ended and what it achieved (its path is in the PNG).
        "target": (
            {k: v for k, v in target.items() if k != "path"}
            if (target := report.get("target"))
            else None
        ),
    }


def summary_table(result: dict[str, Any]) -> RenderableType:
    """The closing summary for a terminal."""
    table = Table("", "final greedy policy", "online (what was played)", title="summary")
    final, online = result, result["online"]
    table.add_row(
        "token saving", f"{final['token_reduction']:.1%}", f"{online['token_reduction']:.1%}"
    )
    table.add_row(
        "EM change vs never stopping early",
        f"{-final['em_drop_pts']:+.2f} pts",
        f"{-online['em_drop_pts']:+.2f} pts",
    )
    table.add_row("gap to the oracle closed", f"{final['gap_closed']:.3f}", "")
    target = result.get("target")
    if target and target["achieved"] is not None:
        table.add_row(
            f"target mode: {target['metric']} (target {target['target']:.1f})",
            f"λ = {target['lambda']:.4g}",
            f"{target['achieved']:.1f} measured over λ's last step",
        )
    return table


def save_plot(progress: Progress, path: Path, target: dict[str, Any] | None = None) -> Path | None:
    """EM and tokens per publish window and segment, with the reference dashed; None if empty.

    In target mode (`target`: the daemon's `target_report()`), a third panel
    plots λ's path and the achieved value against the target.
    """
    if not progress.history:
        return None
    import matplotlib as mpl  # noqa: PLC0415 - heavy, and only the demo's end needs it

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = 3 if target and target["path"] else 2
    figure, axes = plt.subplots(rows, 1, figsize=(12, 4 * rows))
    em_axis, token_axis = axes[0], axes[1]
    token_axis.sharex(em_axis)
    x = [interactions for interactions, _ in progress.history]
    colours = plt.get_cmap("tab10")
    for index, segment in enumerate(progress.segments):
        windows = [window[segment] for _, window in progress.history]
        colour = colours(index % 10)

        def mean(values: list[float], counts: list[int]) -> list[float]:
            return [v / c if c else float("nan") for v, c in zip(values, counts, strict=True)]

        counts = [w.n for w in windows]
        em_axis.plot(x, mean([w.em for w in windows], counts), color=colour, label=segment)
        em_axis.plot(x, mean([w.reference_em for w in windows], counts), color=colour, ls="--")
        token_axis.plot(x, mean([w.tokens for w in windows], counts), color=colour)
        token_axis.plot(
            x, mean([w.reference_tokens for w in windows], counts), color=colour, ls="--"
        )
    em_axis.set_ylabel("expected EM per request")
    token_axis.set_ylabel("expected tokens per request")
    token_axis.set_xlabel("requests")
    em_axis.set_title("stopbandit demo: played (solid) vs never stopping early (dashed)")
    em_axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if rows == 3:  # noqa: PLR2004 - the target panel
        assert target is not None  # noqa: S101 - rows says so
        plot_lambda(axes[2], target)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_lambda(axis: Any, target: dict[str, Any]) -> None:  # noqa: ANN401 - a matplotlib Axes
    """λ's path (left axis) and the achieved value against the target (right), per step."""
    steps = list(range(1, len(target["path"]) + 1))
    axis.plot(steps, [row[1] for row in target["path"]], color="tab:red", label="λ")
    axis.set_ylabel("token_cost_per_1k λ", color="tab:red")
    axis.set_xlabel("λ steps (one per publish round)")
    achieved = axis.twinx()
    achieved.plot(steps, [row[2] for row in target["path"]], color="tab:blue", alpha=0.5)
    achieved.axhline(target["target"], color="tab:blue", ls="--")
    achieved.set_ylabel(f"{target['metric']} (points; target dashed)", color="tab:blue")
    axis.set_title("target mode: λ tuned so the fleet meets the target")
