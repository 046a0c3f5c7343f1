"""The replay report's target-mode section: the calibration curve and λ's path.

`replay --target` puts a `target` entry in the document
(`controller.replay.calibrate`); this draws it: the figure each λ gives on
the log against the target, the calibrated λ marked, and, when the replay
itself ran in target mode (a config with a `target` section), the λ its
core tuned while replaying, as the daemon would have.
"""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path


def target_sections(document: dict[str, Any], directory: Path) -> list[str]:
    """HTML for the report (the plot embedded); nothing without a `target` entry."""
    target = document.get("target")
    if not target:
        return []
    path = directory / "target.png"
    plot_target(target, path)
    unit = "token reduction" if target["metric"] == "token_reduction" else "EM drop"
    reach = "" if target["reachable"] else " (not reachable within the λ bounds)"
    arms = ", ".join(f"{html.escape(s)} {arm:g}" for s, arm in sorted(target["greedy"].items()))
    data = base64.b64encode(path.read_bytes()).decode()
    return [
        "<h2>target mode</h2>",
        (
            f"<p>Target {unit} {target['target']:.2f} pts: token_cost_per_1k λ = "
            f"{target['lambda']:.6g}, estimated {target['achieved']:.2f} pts{reach}. "
            f"Greedy arms at λ: {arms}. Evaluated above as {html.escape(target['name'])}.</p>"
        ),
        f'<p><img alt="calibration of λ" src="data:image/png;base64,{data}"></p>',
    ]


def plot_target(target: dict[str, Any], path: Path) -> None:
    """The calibration curve (and the replay's own λ path, if any) as a PNG."""
    import matplotlib as mpl  # noqa: PLC0415 - heavy, only for reports

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    online = target.get("online_path") or []
    figure, axes = plt.subplots(1, 2 if online else 1, figsize=(12 if online else 7, 4))
    curve_axis = axes[0] if online else axes
    lambdas = [point[0] for point in target["curve"]]
    achieved = [point[1] for point in target["curve"]]
    curve_axis.plot(lambdas, achieved, marker=".", label="estimated on the log")
    curve_axis.axhline(target["target"], color="grey", ls="--", label="target")
    curve_axis.axvline(target["lambda"], color="tab:red", ls=":", label="calibrated λ")
    curve_axis.set_xscale("log")
    curve_axis.set_xlabel("token_cost_per_1k λ")
    curve_axis.set_ylabel(f"{target['metric']} (points)")
    curve_axis.legend(fontsize="small")
    curve_axis.set_title("replay --target: the figure each λ gives")
    if online:
        path_axis = axes[1]
        start = online[0][0]
        path_axis.plot([row[0] - start for row in online], [row[1] for row in online])
        path_axis.axhline(target["lambda"], color="tab:red", ls=":", label="calibrated λ")
        path_axis.set_xlabel("event time since the first step (s)")
        path_axis.set_ylabel("λ")
        path_axis.set_title("λ as the replay's core tuned it")
        path_axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
