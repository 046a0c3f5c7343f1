"""The controller's configuration: one YAML file plus `STOPBANDIT_` env vars.

Parsed once at start into frozen models and passed down; nothing reads the
environment later. Environment variables override the file, with `__`
between nested keys (`STOPBANDIT_REWARD__TOKEN_COST_PER_1K=0.01`). A bad
value stops the start with the field and the reason (`ConfigError`), and so does
a `STOPBANDIT_` variable that names no setting.
"""

from __future__ import annotations

import functools
import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from stopbandit.controller.config_env import unknown_env_names
from stopbandit.controller.replay.settings import ReplaySettings
from stopbandit.policies.exploration import ExplorationConfig
from stopbandit.policies.guardrail import GuardrailConfig
from stopbandit.streams.arms import DEFAULT_KNOB, Arms, Knob, arm_problem, reference_arm
from stopbandit.streams.kafka_config import KafkaConfig

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

DEFAULT_ARMS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]


class ConfigError(ValueError):
    """The configuration cannot be used; `errors` lists (field, reason) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        lines = "; ".join(f"{field}: {reason}" for field, reason in errors)
        super().__init__(f"invalid configuration: {lines}")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RewardConfig(_Section):
    """reward = em_weight * EM - token_cost_per_1k * tokens / 1000."""

    em_weight: Positive = 1.0
    token_cost_per_1k: NonNegative = 0.02


class JoinConfig(_Section):
    """How long a decision waits for its outcome (and the reverse), and how many may wait.

    Attributes:
        wait_s: seconds (event time) one side waits for the other.
        max_pending: sides waiting at once, per partition; past it the oldest is evicted.
        max_pending_bytes: estimated bytes the waiting sides hold, per partition; past it
            the oldest is evicted too. The chart runs 6 partitions in 1 GiB: 32 MiB each
            is 13,000-25,000 typical decisions (1.3-2.4 KB), 1,800 of the widest (18 KB).
        dedup_capacity: joined request_ids remembered per partition, so a duplicate or
            a replay never joins twice. Every one is also in each checkpoint, so it is
            sized for duplicates from at-least-once producers (seconds to minutes of
            traffic), not for history: a restore seeks to the checkpoint's own offset.
    """

    wait_s: Positive = 300.0
    max_pending: Annotated[int, Field(ge=1)] = 200_000
    # What the waiting sides may hold, estimated per side (streams/join.py `footprint_bytes`):
    # a decision with a 64-entry context costs ~15 KB, so the count alone does not bound memory.
    max_pending_bytes: Annotated[int, Field(ge=1)] = 32 * 1024 * 1024
    dedup_capacity: Annotated[int, Field(ge=1)] = 200_000


class LimitsConfig(_Section):
    """Bounds on what one partition holds, whatever its producers send.

    Attributes:
        max_segments: segments a partition learns at once. A new segment past it
            evicts the one idle longest (by last interaction): its statistics, policy
            and checkpoint share are dropped; back, it starts again from a cold start.
            Each costs 20-27 KB of RSS (statistics, cached estimates, policies): a
            partition flooded with 1M new segments grew by 132 MB at the default, so
            the chart's one pod of six partitions stays within its 1 GiB
            (bench/segments_flood.py).
        max_tokens: the most tokens one request can plausibly generate (the serving
            model's generation limit, or above it). An outcome with more is
            dead-lettered (kind `range`), never learned: one absurd value would
            otherwise outweigh every real difference between arms (wire contract,
            "Controller rule (plausible range)").
    """

    max_segments: Annotated[int, Field(ge=1)] = 5_000
    max_tokens: Annotated[int, Field(ge=1)] = 1_048_576


class LearnerConfig(_Section):
    """The outcome models (controller.learners).

    Attributes:
        backend: the Vowpal Wabbit binding.
        learning_rate: VW's learning rate.
        power_t: VW's learning-rate decay exponent.
        interactions: VW feature crosses (`sa`: shared context x arm).
        prior_weight: observations the VW prior is worth for a segment with no data.
        em_step_sd: least step sd of a segment's EM deviation from the common shape
            between neighbouring arms (the data may say more: empirical Bayes).
        token_step_sd: the same for log tokens.
        half_life: interactions of a segment after which old traffic counts half.
        drift_z: standard errors between recent and long-run means that reset a segment.
        drift_window: half-life of the recent statistics that watch for drift.
        max_importance_weight: cap on 1/probability when VW learns an explored decision.
    """

    backend: Literal["auto", "vowpal-wabbit-next", "vowpalwabbit"] = "auto"
    learning_rate: Positive = 0.5
    power_t: NonNegative = 0.5
    interactions: list[str] = Field(default_factory=lambda: ["sa"])
    prior_weight: NonNegative = 20.0
    em_step_sd: Positive = 0.01
    token_step_sd: Positive = 0.2
    half_life: Positive = 50_000.0
    drift_z: Positive = 5.0
    drift_window: Positive = 2_000.0
    max_importance_weight: Annotated[float, Field(ge=1.0)] = 50.0


class PublishConfig(_Section):
    """When and how policies go out."""

    interval_s: Positive = 5.0
    # Anti-entropy: every policy is sent again this often, changed or not, so a policies
    # topic lost or recreated under a running daemon heals without a restart.
    republish_interval_s: Positive = 300.0
    # A round rebuilds the segments that learned and this many others, solved longest ago,
    # so the shared curve shape their learning moved reaches idle segments too (all of them
    # in fleets this small; every one at each republish).
    refresh_per_round: Annotated[int, Field(ge=0)] = 256
    # At most this many policies are built in one round (forced rounds excepted), the
    # busiest changed segments first; the rest wait for the next round. A flood of new
    # segments costs ~1.8 ms each to build: bounded, the loop keeps coming round.
    max_builds_per_round: Annotated[int, Field(ge=1)] = 1000
    hmac_key: SecretStr | None = None


class CheckpointConfig(_Section):
    """Where partition state is kept between runs, and what a restore does with bad state.

    Attributes:
        on_corrupt: no valid checkpoint remains (every copy corrupt, written for other
            arms, or deleted while the group has committed offsets): `refuse` keeps the
            partition paused and the replica not ready until an operator acts
            (`stopbandit checkpoint inspect|reset`); `reset` starts it fresh from the
            committed offset, everything it had learned lost, with an error and an alarm.
        on_offset_ahead: the offset to resume from is past the end of the events
            partition (the topic was recreated): `refuse` keeps it paused; `reset_offsets`
            keeps the learned state and consumes the partition from its beginning.
    """

    store: Literal["dir", "kafka"] = "dir"
    dir: Path = Path("checkpoints")
    topic: str = "stopbandit.checkpoints"
    interval_s: Positive = 30.0
    on_corrupt: Literal["refuse", "reset"] = "refuse"
    on_offset_ahead: Literal["refuse", "reset_offsets"] = "refuse"


class HttpConfig(_Section):
    """The metrics, health and policies endpoint."""

    host: str = "0.0.0.0"  # noqa: S104 - the daemon serves probes to the cluster
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    # Liveness and readiness fail when work has waited this long past a checkpoint round
    # (checkpoint.interval_s) without a successful flush or checkpoint: a producer or
    # store that cannot recover. Kubernetes then restarts the daemon.
    unhealthy_after_s: Positive = 300.0


class LogConfig(_Section):
    """Structured logging."""

    # auto: readable lines on a terminal, JSON lines otherwise (a pod's log collector).
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class ControlConfig(_Section):
    """The control group: requests served at a fixed arm, to measure what the policies earn.

    Attributes:
        fraction: share of each segment's requests in the control group, chosen from the
            request_id (policies/sampling.py). 0 (the default) turns it off: every request
            in it forgoes the savings, and a run's logs stay what they were; the day-1
            runbook (docs/operations.md) sets 0.02.
        arm: the arm control requests are served at; None means `reference_arm`, which
            never stops early and is the reference the guardrail measures EM drops from.
            Set it to the threshold the fleet ran before to measure against that instead.
        top_segments: segments reported by name in the outcome metrics, the busiest by
            traffic; the rest are summed under one label, so /metrics stays bounded.
    """

    fraction: Annotated[float, Field(ge=0.0, le=0.5, allow_inf_nan=False)] = 0.0
    arm: Annotated[float, Field(allow_inf_nan=False)] | None = None
    top_segments: Annotated[int, Field(ge=0, le=1000)] = 20


class TargetConfig(_Section):
    """Target mode (controller.targets): token_cost_per_1k tuned online to meet one target.

    Off unless one of the two targets is set, and never both; both are
    fleet-wide and measured against the reference arm. The step rule is in controller/targets.py.

    Attributes:
        token_reduction: share of the reference arm's tokens to save (0.30: cut 30 %),
            losing as little EM as the reward allows.
        max_em_drop_pts: EM points below the reference arm the fleet may lose, saving
            as many tokens as that allows.
        interval_s: least event time between two steps of λ.
        min_interactions: least requests an interval must hold before λ steps.
        reference_share: least probability of the reference arm in every segment's policy
            (within exploration.max_explore), so the arm the target is measured against
            keeps being measured; not applied when the control group serves that arm.
        integral_gain: e-folds of λ per point of error per step (None: the metric's default).
        proportional_gain: e-folds of λ per point of change in the error (None: default).
        max_step: largest change of log λ in one step.
        lambda_min: least token_cost_per_1k λ may take (> 0: λ moves multiplicatively).
        lambda_max: largest token_cost_per_1k λ may take.
        stats_topic: the compacted topic where each partition's running sums travel
            (controller/daemon/stats.py), so that λ is the fleet's.
    """

    token_reduction: Annotated[float, Field(gt=0.0, lt=1.0, allow_inf_nan=False)] | None = None
    max_em_drop_pts: Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)] | None = None
    interval_s: Positive = 10.0
    min_interactions: Annotated[int, Field(ge=1)] = 500
    reference_share: Annotated[float, Field(ge=0.0, le=0.2, allow_inf_nan=False)] = 0.03
    integral_gain: Positive | None = None
    proportional_gain: NonNegative | None = None
    max_step: Annotated[float, Field(gt=0.0, le=2.0, allow_inf_nan=False)] = 0.25
    lambda_min: Positive = 1e-4
    lambda_max: Positive = 10.0
    stats_topic: str = "stopbandit.stats"

    @property
    def enabled(self) -> bool:
        """Whether target mode is on (one of the targets is set)."""
        return self.token_reduction is not None or self.max_em_drop_pts is not None

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        # Off by default; a section that sets anything must say which target it is for.
        if self.token_reduction is not None and self.max_em_drop_pts is not None:
            raise ValueError(
                "exactly one of token_reduction and max_em_drop_pts must be set, "
                f"got {self.token_reduction} and {self.max_em_drop_pts}"
            )
        # Set to their defaults (a dumped config read back) they say nothing: not an error.
        tuned = {
            name
            for name in self.model_fields_set
            if getattr(self, name) != type(self).model_fields[name].default
        }
        if not self.enabled and tuned:
            raise ValueError(
                "exactly one of token_reduction and max_em_drop_pts must be set "
                f"(got only {', '.join(sorted(tuned))})"
            )
        if self.lambda_min >= self.lambda_max:
            raise ValueError(
                f"lambda_min ({self.lambda_min}) must be below lambda_max ({self.lambda_max})"
            )
        return self


_yaml_path: ContextVar[Path | None] = ContextVar("_yaml_path", default=None)


class StopbanditConfig(BaseSettings):
    """Everything the controller, simulator and replay need, validated once."""

    model_config = SettingsConfigDict(
        env_prefix="STOPBANDIT_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    # What an arm is (streams.arms): the knob's rules check the arms after parsing, and
    # the reference and default arms default to the knob's arm that never stops early.
    knob: Knob = DEFAULT_KNOB
    arms: list[Annotated[float, Field(allow_inf_nan=False)]] = Field(
        default_factory=lambda: list(DEFAULT_ARMS)
    )
    reference_arm: float = 1.0
    default_arm: float = 1.0
    reward: RewardConfig = RewardConfig()
    join: JoinConfig = JoinConfig()
    limits: LimitsConfig = LimitsConfig()
    exploration: ExplorationConfig = ExplorationConfig()
    # Arms that confidently lose more than max_em_drop_pts EM are kept out (policies.guardrail).
    guardrail: GuardrailConfig = GuardrailConfig()
    learner: LearnerConfig = LearnerConfig()
    publish: PublishConfig = PublishConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    kafka: KafkaConfig = KafkaConfig()
    http: HttpConfig = HttpConfig()
    log: LogConfig = LogConfig()
    replay: ReplaySettings = ReplaySettings()
    # Target mode: off unless a target is set (controller.targets).
    target: TargetConfig = TargetConfig()
    control: ControlConfig = ControlConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - no .env files
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments beat env vars, env vars beat the YAML file, which beats defaults."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _yaml_path.get()
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        sources.append(file_secret_settings)
        return tuple(sources)

    @model_validator(mode="before")
    @classmethod
    def _knob_defaults(cls, data: Any) -> Any:  # noqa: ANN401 - raw input, checked after
        # Budgets have no default list, and their reference arm is the largest budget: the
        # defaults of reference_arm and default_arm follow the knob when not given.
        if not isinstance(data, dict) or data.get("knob") != "token_budget":
            return data
        arms = data.get("arms")
        if "arms" not in data:
            raise ValueError("arms: the token_budget knob needs its budgets listed")
        numbers = isinstance(arms, list) and all(
            isinstance(a, int | float) and not isinstance(a, bool) for a in arms
        )
        if numbers and arms:
            top = reference_arm("token_budget", [float(a) for a in arms])
            data = {"reference_arm": top, "default_arm": top, **data}
        return data

    @model_validator(mode="after")
    def _arms_are_usable(self) -> Self:
        if len(self.arms) < 2:  # noqa: PLR2004 - a bandit needs two arms
            raise ValueError("arms: at least two arms are needed")
        problem = arm_problem(self.knob, self.arms)
        if problem is not None:
            raise ValueError(f"{problem[0]}: {problem[1]}")
        for name in ("reference_arm", "default_arm"):
            if self.arm_index(getattr(self, name)) is None:
                raise ValueError(f"{name}: {getattr(self, name):g} is not one of the arms")
        if self.arm_index(self.reference_arm) != len(self.arms) - 1:
            raise ValueError(
                f"reference_arm: {self.reference_arm:g} stops requests early; the reference "
                f"is the arm that never does, the highest ({self.arms[-1]:g})"
            )
        return self

    @model_validator(mode="after")
    def _floors_fit_the_cap(self) -> Self:
        # Every arm off the greedy one may hold the floor: together they must fit the cap.
        floors = self.exploration.floor * (len(self.arms) - 1)
        if floors > self.exploration.max_explore + 1e-12:
            raise ValueError(
                f"exploration.floor: {self.exploration.floor:g} x {len(self.arms) - 1} arms off "
                f"the greedy one = {floors:g} exceeds exploration.max_explore "
                f"{self.exploration.max_explore:g} (lower the floor or raise the cap)"
            )
        shares = {
            "guardrail.reference_share": (
                self.guardrail.reference_share if self.guardrail.max_em_drop_pts is not None else 0
            ),
            "target.reference_share": self.target.reference_share if self.target.enabled else 0,
        }
        for name, share in shares.items():
            if floors + share > self.exploration.max_explore + 1e-12:
                raise ValueError(
                    f"{name}: {share:g} on top of the floors ({floors:g}) "
                    f"exceeds exploration.max_explore {self.exploration.max_explore:g}"
                )
        return self

    @model_validator(mode="after")
    def _control_arm_is_an_arm(self) -> Self:
        if self.control.arm is not None and self.arm_index(self.control.arm) is None:
            raise ValueError(f"control.arm: {self.control.arm:g} is not one of the arms")
        return self

    @property
    def control_arm(self) -> float:
        """The arm control-group requests are served at (`reference_arm` unless set)."""
        return self.reference_arm if self.control.arm is None else self.control.arm

    @functools.cached_property
    def arm_table(self) -> Arms:
        """The arms with their value-to-index lookup."""
        return Arms(self.arms)

    def arm_index(self, threshold: float) -> int | None:
        """Index of `threshold` among the arms, or None if it is not one."""
        return self.arm_table.index(threshold)

    def masked(self) -> dict[str, Any]:
        """The configuration as plain data with secrets masked, for the start-up log."""
        return self.model_dump(mode="json")


def _field_of(error: ErrorDetails) -> str:
    location = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"])
    if not location and message.startswith("Value error, ") and ":" in message:
        # model-level checks name their field in the message itself.
        return message.removeprefix("Value error, ").split(":", 1)[0]
    return location or "config"


def _reason_of(error: ErrorDetails) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"] and ":" in message:
        return message.split(":", 1)[1].strip()
    return message


def _yaml_problem(error: Exception) -> str:
    # PyYAML's message spans several lines with a caret drawing; the CLI prints one line.
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"{error.problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(error).split())


def _settings_field(error: SettingsError) -> str:
    # pydantic-settings names the field only in its message: 'error parsing value for field "arms"'.
    match = re.search(r'field "([^"]+)"', str(error))
    return match.group(1) if match else "config"


def load_config(
    path: Path | None = None,
    **overrides: Any,  # noqa: ANN401 - any field of the model, validated by it
) -> StopbanditConfig:
    """Load and validate the configuration.

    Args:
        path: a YAML file; None for defaults plus environment only.
        **overrides: values that beat both the file and the environment (CLI flags).

    Returns:
        The frozen configuration.

    Raises:
        ConfigError: the file is unreadable or a value is invalid; names each field and reason.
    """
    if path is not None:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise ConfigError([(str(path), f"cannot read YAML ({_yaml_problem(error)})")]) from None
        if not isinstance(document, dict):
            raise ConfigError([(str(path), "must be a YAML mapping")])
    if strangers := unknown_env_names(StopbanditConfig, os.environ):
        raise ConfigError(strangers)
    token = _yaml_path.set(path)
    try:
        return StopbanditConfig(**overrides)
    except ValidationError as error:
        raise ConfigError(
            [(_field_of(e), _reason_of(e)) for e in error.errors(include_url=False)]
        ) from None
    except SettingsError as error:
        # An environment value of a list or section that is not JSON.
        field = _settings_field(error)
        reason = f"cannot parse STOPBANDIT_{field.upper()} (lists and sections are JSON)"
        raise ConfigError([(field, reason)]) from None
    finally:
        _yaml_path.reset(token)
