"""TargetMode: a core's tally and controller, stepped locally, reported and checkpointed."""

from __future__ import annotations

import pytest

from stopbandit.controller.config import TargetConfig
from stopbandit.controller.targets import TargetMode


def mode() -> TargetMode:
    """Target mode at 30 % token reduction, stepping every second of event time."""
    return TargetMode.of(
        TargetConfig(token_reduction=0.3, interval_s=1.0, min_interactions=1), 0.02
    )


def test_local_mode_steps_from_its_own_tally() -> None:
    """Requests served at half the reference's tokens (50 %) make tokens cheaper."""
    target = mode()
    target.publish_round({}, 0.0)
    for _ in range(10):
        target.tally.add("a", 1.0, 50)
    assert target.publish_round({"a": (1.0, 100.0)}, 2.0)
    assert target.controller.achieved == pytest.approx(50.0)
    assert target.lambda_ < 0.02
    report = target.report()
    assert report["metric"] == "token_reduction"
    assert report["target"] == pytest.approx(30.0)
    assert report["path"] == [[2.0, target.lambda_, pytest.approx(50.0)]]


def test_non_local_mode_only_settles() -> None:
    """The daemon's cores settle their tallies; λ is stepped elsewhere."""
    target = mode()
    target.local = False
    target.tally.add("a", 1.0, 50)
    assert not target.publish_round({"a": (1.0, 100.0)}, 0.0)
    assert not target.publish_round({"a": (1.0, 100.0)}, 5.0)
    assert target.tally.totals.n == 1
    assert target.lambda_ == 0.02


def test_snapshot_restore() -> None:
    """λ, the step rule's state and the tally survive a restart."""
    target = mode()
    target.publish_round({}, 0.0)
    target.tally.add("a", 1.0, 50)
    target.publish_round({"a": (1.0, 100.0)}, 2.0)
    target.tally.add("b", 0.0, 7)
    restarted = mode()
    restarted.restore(target.snapshot())
    assert restarted.snapshot() == target.snapshot()
    assert restarted.lambda_ == target.lambda_


def test_restore_rejects_malformed() -> None:
    """A state that is not a target snapshot is refused with ValueError."""
    with pytest.raises(ValueError, match="target state"):
        mode().restore({"lambda": 1.0})
