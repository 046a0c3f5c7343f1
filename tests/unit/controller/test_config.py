"""Configuration: YAML, then env vars, then arguments; every bad value named with its reason."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import ValidationError

from stopbandit.controller.config import DEFAULT_ARMS, ConfigError, load_config

MASK = "*" * 10  # how pydantic prints a SecretStr

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No STOPBANDIT_ variable from the shell running the tests leaks into them."""
    for name in list(os.environ):
        if name.startswith("STOPBANDIT_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, name: str = "stopbandit.yaml") -> Path:
    """A config file with `text`."""
    path = tmp_path / name
    path.write_text(text)
    return path


def errors_of(path: Path | None = None, **overrides: Any) -> list[tuple[str, str]]:
    """The (field, reason) pairs load_config rejects with."""
    with pytest.raises(ConfigError) as caught:
        load_config(path, **overrides)
    assert "\n" not in str(caught.value)
    return caught.value.errors


def test_defaults_load_without_a_file() -> None:
    """No file and no env: the documented defaults."""
    config = load_config()
    assert config.arms == list(DEFAULT_ARMS)
    assert (config.reference_arm, config.default_arm) == (1.0, 1.0)
    assert config.reward.token_cost_per_1k == 0.02
    assert config.publish.hmac_key is None


def test_yaml_values_are_read(tmp_path: Path) -> None:
    """Every section of the file reaches the model."""
    path = write(
        tmp_path,
        "arms: [0.8, 0.9, 1.0]\nreference_arm: 1.0\ndefault_arm: 0.9\n"
        "reward: {em_weight: 2.0, token_cost_per_1k: 0.01}\n"
        "join: {wait_s: 60, max_pending: 10, dedup_capacity: 20}\n"
        "kafka: {bootstrap_servers: ['a:9092', 'b:9092'], security_protocol: SASL_SSL}\n"
        "log: {format: console, level: debug}\n",
    )
    config = load_config(path)
    assert config.arms == [0.8, 0.9, 1.0]
    assert config.default_arm == 0.9
    assert (config.reward.em_weight, config.reward.token_cost_per_1k) == (2.0, 0.01)
    assert (config.join.wait_s, config.join.max_pending, config.join.dedup_capacity) == (
        60.0,
        10,
        20,
    )
    assert config.kafka.bootstrap_servers == ["a:9092", "b:9092"]
    assert (config.log.format, config.log.level) == ("console", "debug")


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    """An empty YAML document is an empty mapping, not an error."""
    assert load_config(write(tmp_path, "")) == load_config()


def test_env_beats_yaml_and_merges_into_its_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STOPBANDIT_REWARD__TOKEN_COST_PER_1K replaces one key; the file's other keys stay."""
    path = write(tmp_path, "reward: {em_weight: 2.0, token_cost_per_1k: 0.01}\n")
    monkeypatch.setenv("STOPBANDIT_REWARD__TOKEN_COST_PER_1K", "0.5")
    config = load_config(path)
    assert (config.reward.em_weight, config.reward.token_cost_per_1k) == (2.0, 0.5)


def test_overrides_beat_env_and_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Arguments (CLI flags) win over both, key by key."""
    path = write(tmp_path, "reward: {em_weight: 2.0, token_cost_per_1k: 0.01}\n")
    monkeypatch.setenv("STOPBANDIT_REWARD__TOKEN_COST_PER_1K", "0.5")
    config = load_config(path, reward={"token_cost_per_1k": 0.1})
    assert (config.reward.em_weight, config.reward.token_cost_per_1k) == (2.0, 0.1)


def test_env_list_is_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lists come from the environment as JSON."""
    monkeypatch.setenv("STOPBANDIT_ARMS", "[0.5, 1.0]")
    assert load_config().arms == [0.5, 1.0]


def test_env_that_is_not_json_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """A list in the environment that does not parse is a ConfigError, not a traceback."""
    monkeypatch.setenv("STOPBANDIT_ARMS", "0.5,1.0")
    [(field, reason)] = errors_of()
    assert field == "arms"
    assert "STOPBANDIT_ARMS" in reason


def test_invalid_env_value_names_the_nested_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad env value is reported like a bad file value, by its dotted field."""
    monkeypatch.setenv("STOPBANDIT_REWARD__TOKEN_COST_PER_1K", "cheap")
    assert [field for field, _ in errors_of()] == ["reward.token_cost_per_1k"]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param("bogus: 1\n", "bogus", id="unknown top-level key"),
        pytest.param("reward: {em_weigth: 1.0}\n", "reward.em_weigth", id="misspelt key"),
        pytest.param("kafka: {topic: x}\n", "kafka.topic", id="unknown kafka key"),
        pytest.param("reward: {token_cost_per_1k: -0.01}\n", "reward.token_cost_per_1k", id="neg"),
        pytest.param("reward: {token_cost_per_1k: .nan}\n", "reward.token_cost_per_1k", id="NaN"),
        pytest.param("reward: {em_weight: 0}\n", "reward.em_weight", id="zero em_weight"),
        pytest.param("reward: {em_weight: cheap}\n", "reward.em_weight", id="not a number"),
        pytest.param("reward: 3\n", "reward", id="section not a mapping"),
        pytest.param("arms: []\n", "arms", id="no arms"),
        pytest.param("arms: [1.0]\ndefault_arm: 1.0\n", "arms", id="one arm"),
        pytest.param("arms: [0.9, 0.5, 1.0]\n", "arms", id="unsorted arms"),
        pytest.param("arms: [0.5, 0.5, 1.0]\n", "arms", id="repeated arm"),
        pytest.param("arms: [0.5, 1.5]\n", "arms.1", id="arm above 1"),
        pytest.param("arms: [-0.5, 1.0]\n", "arms.0", id="negative arm"),
        pytest.param("default_arm: 0.6\n", "default_arm", id="default arm not an arm"),
        pytest.param("reference_arm: 0.3\n", "reference_arm", id="reference arm not an arm"),
        pytest.param("join: {wait_s: 0}\n", "join.wait_s", id="zero wait"),
        pytest.param("join: {max_pending: 0}\n", "join.max_pending", id="zero max_pending"),
        pytest.param("join: {dedup_capacity: -1}\n", "join.dedup_capacity", id="neg dedup"),
        pytest.param("exploration: {floor: 1.5}\n", "exploration.floor", id="floor above 1"),
        pytest.param("learner: {backend: torch}\n", "learner.backend", id="bad backend"),
        pytest.param("publish: {interval_s: -5}\n", "publish.interval_s", id="neg interval"),
        pytest.param("checkpoint: {store: s3}\n", "checkpoint.store", id="bad store"),
        pytest.param("kafka: {security_protocol: TLS}\n", "kafka.security_protocol", id="proto"),
        pytest.param("kafka: {sasl_mechanism: GSSAPI}\n", "kafka.sasl_mechanism", id="mech"),
        pytest.param("kafka: {partitions: 0}\n", "kafka.partitions", id="zero partitions"),
        pytest.param("kafka: {session_timeout_ms: 10}\n", "kafka.session_timeout_ms", id="tmo"),
        pytest.param("http: {port: 70000}\n", "http.port", id="port"),
        pytest.param("log: {format: xml}\n", "log.format", id="log format"),
        pytest.param("log: {level: verbose}\n", "log.level", id="log level"),
    ],
)
def test_invalid_value_names_its_field(tmp_path: Path, text: str, field: str) -> None:
    """Each validation stops the start with the field at fault and a reason."""
    errors = errors_of(write(tmp_path, text))
    assert field in [f for f, _ in errors], errors
    assert all(reason for _, reason in errors)


def test_every_bad_field_is_reported_at_once(tmp_path: Path) -> None:
    """An operator fixes all mistakes in one go: each is listed."""
    path = write(tmp_path, "reward: {token_cost_per_1k: -1}\nlog: {level: loud}\nbogus: 1\n")
    fields = {field for field, _ in errors_of(path)}
    assert fields == {"reward.token_cost_per_1k", "log.level", "bogus"}


@pytest.mark.parametrize(
    ("text", "reason_part"),
    [
        pytest.param("reward: {em_weight: [1\n  x: 2\n", "line 2, column 4", id="syntax error"),
        pytest.param("a: b: c\n", "line 1", id="nested mapping on one line"),
        pytest.param('key: "unclosed\n', "cannot read YAML", id="unclosed quote"),
    ],
)
def test_unparsable_yaml_names_the_file_and_line(
    tmp_path: Path, text: str, reason_part: str
) -> None:
    """A YAML syntax error is one line: the file, and where the problem is."""
    path = write(tmp_path, text)
    [(field, reason)] = errors_of(path)
    assert field == str(path)
    assert reason_part in reason


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A path that does not exist names itself."""
    path = tmp_path / "absent.yaml"
    [(field, reason)] = errors_of(path)
    assert field == str(path)
    assert "No such file" in reason


def test_directory_is_a_config_error(tmp_path: Path) -> None:
    """A directory given as the config file is unreadable, not a crash."""
    assert errors_of(tmp_path)[0][0] == str(tmp_path)


def test_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    """Bytes that are not text are reported, not raised as UnicodeDecodeError."""
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00reward: 1")
    assert errors_of(path)[0][0] == str(path)


@pytest.mark.parametrize("text", ["- 0.5\n- 1.0\n", "just a string\n", "42\n"])
def test_yaml_that_is_not_a_mapping_is_rejected(tmp_path: Path, text: str) -> None:
    """The top level must be a mapping of sections."""
    path = write(tmp_path, text)
    assert errors_of(path) == [(str(path), "must be a YAML mapping")]


def test_masked_hides_secrets_and_keeps_the_rest(tmp_path: Path) -> None:
    """publish.hmac_key and kafka.sasl_password never reach the start-up log."""
    path = write(
        tmp_path,
        "publish: {hmac_key: s3cret-hmac}\n"
        "kafka: {sasl_username: svc, sasl_password: s3cret-sasl, security_protocol: SASL_SSL,"
        " sasl_mechanism: PLAIN}\n",
    )
    config = load_config(path)
    masked = config.masked()
    text = json.dumps(masked)
    assert "s3cret" not in text
    assert masked["publish"]["hmac_key"] == MASK
    assert masked["kafka"]["sasl_password"] == MASK
    assert masked["kafka"]["sasl_username"] == "svc"
    assert masked["reward"] == {"em_weight": 1.0, "token_cost_per_1k": 0.02}
    assert config.publish.hmac_key is not None
    assert config.publish.hmac_key.get_secret_value() == "s3cret-hmac"
    assert config.kafka.sasl_password is not None
    assert config.kafka.sasl_password.get_secret_value() == "s3cret-sasl"


def test_secret_from_env_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key given by env var (as in the chart's secret) is masked just the same."""
    monkeypatch.setenv("STOPBANDIT_PUBLISH__HMAC_KEY", "from-env")
    config = load_config()
    assert config.masked()["publish"]["hmac_key"] == MASK
    assert "from-env" not in repr(config)


def test_config_is_frozen() -> None:
    """Parsed once and passed down: nothing can change it later."""
    config = load_config()
    with pytest.raises(ValidationError):
        config.arms = [0.5, 1.0]  # type: ignore[misc]
    with pytest.raises(ValidationError):
        config.reward.em_weight = 3.0  # type: ignore[misc]


def test_error_message_lists_field_and_reason() -> None:
    """str(ConfigError) is the one line the CLI prints."""
    error = ConfigError([("reward.em_weight", "must be > 0"), ("arms", "too few")])
    assert str(error) == "invalid configuration: reward.em_weight: must be > 0; arms: too few"


def test_arm_index_tolerates_float_noise() -> None:
    """A decision's threshold matches its arm despite float rounding."""
    config = load_config()
    assert config.arm_index(0.1 + 0.85) == DEFAULT_ARMS.index(0.95)
    assert config.arm_index(0.96) is None


BUDGET_ARMS = "arms: [512, 1024, 2048, 4096, 8192, 32768]\n"


def test_a_token_budget_config_defaults_to_its_largest_budget(tmp_path: Path) -> None:
    """Budgets as arms (knob token_budget): reference and default the largest budget."""
    config = load_config(write(tmp_path, "knob: token_budget\n" + BUDGET_ARMS))
    assert config.knob == "token_budget"
    assert config.arms == [512.0, 1024.0, 2048.0, 4096.0, 8192.0, 32768.0]
    assert (config.reference_arm, config.default_arm) == (32768.0, 32768.0)
    assert config.arm_index(2048) == 2


def test_a_token_budget_config_may_start_from_a_lower_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """default_arm may be any budget; the knob also comes from the environment."""
    path = write(tmp_path, BUDGET_ARMS + "default_arm: 8192\n")
    monkeypatch.setenv("STOPBANDIT_KNOB", "token_budget")
    config = load_config(path)
    assert (config.knob, config.reference_arm, config.default_arm) == (
        "token_budget",
        32768.0,
        8192.0,
    )


def test_the_confidence_knob_is_the_default_and_unchanged() -> None:
    """No knob: thresholds, the reference 1.0, as before revision 1.1."""
    config = load_config()
    assert config.knob == "confidence"
    assert (config.reference_arm, config.default_arm) == (1.0, 1.0)


@pytest.mark.parametrize(
    ("text", "field", "reason_part"),
    [
        pytest.param("knob: temperature\n", "knob", "", id="unknown knob"),
        pytest.param("knob: token_budget\n", "arms", "budgets", id="budgets not listed"),
        pytest.param(
            "knob: token_budget\narms: [0.5, 1024]\n", "arms.0", "integers >= 1", id="threshold"
        ),
        pytest.param(
            "knob: token_budget\narms: [512.5, 1024]\n", "arms.0", "integers >= 1", id="fraction"
        ),
        pytest.param("knob: token_budget\narms: [0, 1024]\n", "arms.0", ">= 1", id="zero"),
        pytest.param(
            "knob: token_budget\narms: [2048, 1024]\n", "arms", "ascending", id="descending"
        ),
        pytest.param(BUDGET_ARMS, "arms.0", "[0, 1]", id="budgets under the confidence knob"),
        pytest.param(
            "knob: token_budget\n" + BUDGET_ARMS + "default_arm: 3000\n",
            "default_arm",
            "not one of the arms",
            id="default no budget",
        ),
        pytest.param(
            "knob: token_budget\n" + BUDGET_ARMS + "reference_arm: 8192\n",
            "reference_arm",
            "never",
            id="reference stops early",
        ),
        pytest.param(
            "arms: [0.5, 0.9, 1.0]\nreference_arm: 0.9\n",
            "reference_arm",
            "never",
            id="threshold reference stops early",
        ),
    ],
)
def test_the_knob_rejects_what_it_forbids(
    tmp_path: Path, text: str, field: str, reason_part: str
) -> None:
    """Each knob's rule stops the start naming the field and the reason."""
    errors = dict(errors_of(write(tmp_path, text)))
    assert field in errors, errors
    assert reason_part in errors[field]
