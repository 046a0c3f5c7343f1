"""Config sections exploration and guardrail: the cap's default, floors within it, limits."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from stopbandit.controller.config import ConfigError, load_config
from stopbandit.controller.core import ControllerCore

if TYPE_CHECKING:
    from pathlib import Path


def test_the_default_cap_keeps_at_least_80_percent_on_the_greedy_arm() -> None:
    """Issue 13: by default the safe start promises >= 80 % on today's threshold."""
    config = load_config()
    assert 1.0 - config.exploration.max_explore >= 0.8
    assert config.exploration.floor * (len(config.arms) - 1) <= config.exploration.max_explore
    assert config.guardrail.max_em_drop_pts is None
    assert config.guardrail.confidence == 0.95


def test_floors_that_cannot_fit_the_cap_name_the_field_and_the_reason() -> None:
    """A floor x (arms - 1) above max_explore: refused at start, not silently broken later."""
    with pytest.raises(ConfigError) as raised:
        load_config(exploration={"floor": 0.05, "max_explore": 0.2})
    [(field, reason)] = raised.value.errors
    assert field == "exploration.floor"
    assert "0.05 x 6 arms" in reason
    assert "max_explore 0.2" in reason
    # Fewer arms, the same floor fits.
    assert load_config(arms=[0.9, 1.0], exploration={"floor": 0.05, "max_explore": 0.2})


def test_a_per_segment_guardrail_reaches_the_builder(tmp_path: Path) -> None:
    """YAML mapping segment -> points; the core's builder measures against the reference arm."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "guardrail:\n  max_em_drop_pts: {'math/gsm8k': 0.5, '*': 2}\n  confidence: 0.9\n"
    )
    config = load_config(path)
    builder = ControllerCore(config).builder
    assert builder.reference_arm == config.arms.index(config.reference_arm)
    assert builder.guardrail.drop_pts_for("math/gsm8k") == 0.5
    assert builder.guardrail.drop_pts_for("qa/nq") == 2.0
    assert builder.guardrail.confidence == 0.9


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"guardrail": {"max_em_drop_pts": -1}}, "guardrail.max_em_drop_pts"),
        ({"guardrail": {"confidence": 1.0}}, "guardrail.confidence"),
        ({"guardrail": {"max_em_drop_pts": {"a": -1}}}, "guardrail.max_em_drop_pts"),
    ],
)
def test_bad_guardrail_values_name_their_field(section: dict, field: str) -> None:
    """A negative limit or a confidence of 1 stops the start, naming the field."""
    with pytest.raises(ConfigError) as raised:
        load_config(**section)
    assert any(name.startswith(field) for name, _ in raised.value.errors)


def test_the_reference_share_must_fit_the_cap_with_the_floors() -> None:
    """A guardrail's reference share on top of the floors over the cap: refused, named."""
    with pytest.raises(ConfigError) as raised:
        load_config(
            exploration={"max_explore": 0.05},
            guardrail={"max_em_drop_pts": 1.0, "reference_share": 0.03},
        )
    assert [field for field, _ in raised.value.errors] == ["guardrail.reference_share"]
    # Without a limit, the share is unused and nothing is refused.
    assert load_config(exploration={"max_explore": 0.05}, guardrail={"reference_share": 0.03})
