"""The target section: off by default, exactly one target, ranges, field and reason."""

from __future__ import annotations

import os

import pytest

from stopbandit.controller.config import ConfigError, load_config


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No STOPBANDIT_ variable from the shell running the tests leaks into them."""
    for name in list(os.environ):
        if name.startswith("STOPBANDIT_"):
            monkeypatch.delenv(name)


def errors_of(**overrides: object) -> list[tuple[str, str]]:
    """The (field, reason) pairs load_config rejects with."""
    with pytest.raises(ConfigError) as caught:
        load_config(**overrides)
    return caught.value.errors


def test_off_by_default() -> None:
    """Without a target, target mode is off."""
    assert not load_config().target.enabled


def test_one_target_turns_it_on() -> None:
    """Either target alone is accepted; the gains default to the metric's."""
    assert load_config(target={"token_reduction": 0.3}).target.enabled
    config = load_config(target={"max_em_drop_pts": 0.5})
    assert config.target.max_em_drop_pts == 0.5
    assert config.target.integral_gain is None


def test_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """STOPBANDIT_TARGET__TOKEN_REDUCTION sets it."""
    monkeypatch.setenv("STOPBANDIT_TARGET__TOKEN_REDUCTION", "0.4")
    assert load_config().target.token_reduction == 0.4


@pytest.mark.parametrize(
    ("section", "field", "reason"),
    [
        ({"token_reduction": 0.3, "max_em_drop_pts": 1.0}, "target", "exactly one"),
        ({"interval_s": 5.0}, "target", "exactly one"),
        ({"token_reduction": 1.0}, "target.token_reduction", "less than 1"),
        ({"token_reduction": 0.0}, "target.token_reduction", "greater than 0"),
        ({"max_em_drop_pts": -1.0}, "target.max_em_drop_pts", "greater than or equal"),
        ({"token_reduction": 0.3, "max_step": 3.0}, "target.max_step", "less than or equal"),
        ({"token_reduction": 0.3, "lambda_min": 1.0, "lambda_max": 0.5}, "target", "lambda_min"),
        ({"token_reduction": 0.3, "min_interactions": 0}, "target.min_interactions", "greater"),
    ],
)
def test_bad_sections_name_field_and_reason(
    section: dict[str, float], field: str, reason: str
) -> None:
    """Each bad target section is refused naming the field and why."""
    errors = errors_of(target=section)
    assert [f for f, _ in errors] == [field]
    assert reason in errors[0][1]


def test_a_dumped_config_reads_back() -> None:
    """The section at its defaults (as model_dump writes it) is no target-less tuning."""
    dumped = load_config().model_dump(mode="json")
    assert not load_config(**dumped).target.enabled
    dumped["target"]["token_reduction"] = 0.3
    assert load_config(**dumped).target.enabled


def test_the_reference_share_must_fit_the_exploration_cap() -> None:
    """Floors plus target mode's reference share over max_explore: refused, naming both."""
    exploration = {"floor": 0.02, "max_explore": 0.15}
    assert load_config(target={"token_reduction": 0.3}, exploration=exploration).target.enabled
    (error,) = errors_of(
        target={"token_reduction": 0.3, "reference_share": 0.05}, exploration=exploration
    )
    assert error[0] == "target.reference_share"
    assert "exceeds exploration.max_explore" in error[1]
    # Outside target mode the share asks for nothing.
    load_config(exploration=exploration)
