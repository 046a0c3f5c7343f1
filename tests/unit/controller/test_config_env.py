"""A `STOPBANDIT_` variable that names no setting fails the start with the nearest name."""

from __future__ import annotations

import pytest

from stopbandit.controller.config import ConfigError, StopbanditConfig, load_config
from stopbandit.controller.config_env import known_env_names, unknown_env_names


def test_every_field_and_section_has_its_name() -> None:
    """Fields, sections and nested fields all have their variable name."""
    names = known_env_names(StopbanditConfig)
    assert {"STOPBANDIT_ARMS", "STOPBANDIT_REWARD", "STOPBANDIT_REWARD__TOKEN_COST_PER_1K"} <= names
    assert "STOPBANDIT_KAFKA__SASL_PASSWORD" in names


def test_a_typo_in_the_section_names_the_nearest_setting() -> None:
    """The issue's typo is caught and the intended name suggested."""
    environ = {"STOPBANDIT_REWARDS__TOKEN_COST_PER_1K": "0.01", "HOME": "/root"}
    assert unknown_env_names(StopbanditConfig, environ) == [
        (
            "STOPBANDIT_REWARDS__TOKEN_COST_PER_1K",
            "no such setting; did you mean STOPBANDIT_REWARD__TOKEN_COST_PER_1K?",
        )
    ]


def test_known_names_and_other_prefixes_pass() -> None:
    """Known names (any case), other prefixes and allowed extras pass."""
    environ = {
        "STOPBANDIT_REWARD__EM_WEIGHT": "2",
        "stopbandit_log__level": "debug",  # pydantic-settings matches case-insensitively
        "STOPBANDITX": "1",
        "PATH": "/bin",
    }
    assert unknown_env_names(StopbanditConfig, environ) == []
    assert (
        unknown_env_names(StopbanditConfig, {"STOPBANDIT_EXTRA": "1"}, allowed=["STOPBANDIT_EXTRA"])
        == []
    )


def test_a_name_far_from_every_setting_gets_no_guess() -> None:
    """No suggestion when nothing is close."""
    assert unknown_env_names(StopbanditConfig, {"STOPBANDIT_ZZZZZZZZZZZZZZZZ": "1"}) == [
        ("STOPBANDIT_ZZZZZZZZZZZZZZZZ", "no such setting")
    ]


def test_load_config_refuses_the_typo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the configuration fails at start, naming the variable."""
    monkeypatch.setenv("STOPBANDIT_REWARDS__TOKEN_COST_PER_1K", "0.01")
    with pytest.raises(ConfigError, match="did you mean STOPBANDIT_REWARD__TOKEN_COST_PER_1K"):
        load_config()
