"""How the report's plots draw partial-identification bounds, and keep the estimates readable.

A bounded estimate (interval "bounds") is drawn hollow, with dashed grey bars
over its bounds, so it never passes for a point with an error bar. Bounds can
span the outcome's whole range: the frontier's view is set by the estimates
(and bounds of targets mostly identified), bounds whose middle lies in it are
drawn, the others counted in the panel's corner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes

_MARKERS = {"logged": "s", "learned": "*", "fixed": "o"}


def _error(value: float | None, low: float | None, high: float | None) -> list[float]:
    if value is None or low is None or high is None:
        return [0.0]
    return [max(value - low, 0.0), max(high - value, 0.0)]


_BOUNDS_STYLE: dict[str, Any] = {
    "color": "tab:gray",
    "markerfacecolor": "none",
    "capsize": 2,
    "linewidth": 0.8,
}
_VIEW_MARGIN = 0.5  # of the estimates' span, around them, when bounds reach further
# Bounds of a target this much identified are narrow enough to set the view with the estimates.
_MOSTLY_IDENTIFIED = 0.9


def _dashed(bars: Any) -> None:  # noqa: ANN401 - matplotlib's ErrorbarContainer
    for line in bars.lines[2]:
        line.set_linestyle("--")


def _frontier_bounds(ax: Axes, policy: dict[str, Any], *, label: bool = True) -> None:
    # What the log leaves open: dashed bars over the EM and token bounds, hollow at the middle.
    marker = _MARKERS.get(policy["kind"], "o")
    bars = ax.errorbar(
        policy["tokens"],
        policy["em"],
        xerr=[
            [e] for e in _error(policy["tokens"], policy["tokens_ci_low"], policy["tokens_ci_high"])
        ],
        yerr=[[e] for e in _error(policy["em"], policy["em_ci_low"], policy["em_ci_high"])],
        marker=marker,
        **_BOUNDS_STYLE,
    )
    _dashed(bars)
    if label:
        ax.annotate(
            f"{policy['name']} (bounds)", (policy["tokens"], policy["em"]), fontsize=6, color="gray"
        )


def limit_to_estimates(ax: Axes, policies: list[dict[str, Any]], estimator: str) -> bool:
    """Set the view to the estimates (and mostly identified bounds); False if there are none.

    Bounds can span the whole outcome range: the estimates stay readable, and bounds that
    reach further run off the panel.
    """
    points = [
        p
        for p in policies
        if p["estimator"] == estimator
        and p["em"] is not None
        and (p.get("interval") != "bounds" or p.get("identified", 0.0) >= _MOSTLY_IDENTIFIED)
    ]
    if not points:
        return False
    for axis, key in ((ax.set_xlim, "tokens"), (ax.set_ylim, "em")):
        lows = [p[f"{key}_ci_low"] if p[f"{key}_ci_low"] is not None else p[key] for p in points]
        highs = [p[f"{key}_ci_high"] if p[f"{key}_ci_high"] is not None else p[key] for p in points]
        span = max(max(highs) - min(lows), 1e-9)
        axis(min(lows) - _VIEW_MARGIN * span, max(highs) + _VIEW_MARGIN * span)
    return True


def arm_bounds(ax: Axes, x: float, policy: dict[str, Any]) -> None:
    """One arm's reward bounds at `x`: hollow, with a dashed grey bar."""
    bars = ax.errorbar(
        x,
        policy["reward"],
        yerr=[[e] for e in _error(policy["reward"], policy["ci_low"], policy["ci_high"])],
        marker="o",
        label="bounds" if x == 0 else None,
        **_BOUNDS_STYLE,
    )
    _dashed(bars)


def draw_bounded(ax: Axes, bounded: list[dict[str, Any]], *, in_view: bool) -> None:
    """Draw the bounds whose middle is in the view, count the others (all when no view is set)."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    outside = []
    for policy in bounded:
        if not in_view or (x0 <= policy["tokens"] <= x1 and y0 <= policy["em"] <= y1):
            _frontier_bounds(ax, policy)
        else:
            outside.append(policy["name"])
    if outside:
        ax.text(
            0.01,
            0.01,
            f"{len(outside)} bounded beyond the view (tables below)",
            transform=ax.transAxes,
            fontsize=6,
            color="gray",
        )
    if not in_view:
        ax.autoscale_view()
