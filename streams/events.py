"""Wire models of the v1 contract (docs/wire-contract.md): decision, outcome, policy.

Every rule the contract states is enforced here, so that whatever passes
validation can be joined and learned without further checks. Models are
frozen: an event is a fact, not a mutable record.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictInt,
    field_validator,
    model_serializer,
    model_validator,
)

from stopbandit.streams.arms import DEFAULT_KNOB, Knob, arm_problem

SCHEMA_VERSION = 1
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"
CONTEXT_KEY_PATTERN = re.compile(r"^[a-z0-9_]{1,64}$")
MAX_CONTEXT_ENTRIES = 64
MAX_CONTEXT_STRING_CHARS = 128
MAX_SEGMENT_CHARS = 256
PMF_TOLERANCE = 1e-6
FALLBACK_SEGMENT = "*"
# Integers on the wire fit a signed 64-bit integer (a Java long, librdkafka's int64):
# what a serving node can produce, and what the learners can turn into a float.
MAX_WIRE_INT = 2**63 - 1
MIN_WIRE_INT = -(2**63)

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
WireCount = Annotated[StrictInt, Field(ge=0, le=MAX_WIRE_INT)]
ContextValue = Annotated[str, Field(max_length=MAX_CONTEXT_STRING_CHARS)] | FiniteFloat | StrictInt


def _check_segment(segment: str) -> str:
    if not 1 <= len(segment) <= MAX_SEGMENT_CHARS:
        raise ValueError(f"must be 1-{MAX_SEGMENT_CHARS} characters")
    if not segment.isprintable():
        raise ValueError("must contain printable characters only")
    return segment


def _check_version(value: object) -> object:
    # Literal[1] alone would take `true` (True == 1) and 1.0; the contract says the integer 1.
    if type(value) is not int:
        raise ValueError("must be the integer 1")
    return value


def _check_context_value(key: str, value: object) -> None:
    if isinstance(value, str):
        if len(value) > MAX_CONTEXT_STRING_CHARS:
            raise ValueError(
                f"entry {key!r}: strings are at most {MAX_CONTEXT_STRING_CHARS} characters"
            )
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError(f"entry {key!r}: must be valid Unicode text") from None
    elif isinstance(value, bool) or not isinstance(value, int | float):
        # pydantic turns ValueError, not TypeError, into a validation error.
        kind = type(value).__name__
        raise ValueError(f"entry {key!r}: must be a string or a finite number, not {kind}")  # noqa: TRY004
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"entry {key!r}: must be a finite number")
    elif isinstance(value, int) and not MIN_WIRE_INT <= value <= MAX_WIRE_INT:
        raise ValueError(f"entry {key!r}: integers must fit in 64 bits")


class _Event(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    v: Literal[1]
    request_id: Annotated[str, Field(pattern=REQUEST_ID_PATTERN)]
    ts: FiniteFloat
    segment: str

    @field_validator("ts", mode="before")
    @classmethod
    def _ts_is_a_number(cls, value: object) -> object:
        # strict mode would reject an integer timestamp, which JSON writers produce freely.
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value

    _version = field_validator("v", mode="before")(_check_version)

    @field_validator("segment")
    @classmethod
    def _segment_rules(cls, segment: str) -> str:
        return _check_segment(segment)


def _as_float(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


class Decision(_Event):
    """A serving node chose a threshold for one request."""

    type: Literal["decision"] = "decision"
    context: dict[str, ContextValue] = Field(default_factory=dict)
    threshold: FiniteFloat
    probability: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)]
    policy_version: WireCount
    pmf: list[tuple[FiniteFloat, FiniteFloat]] | None = None

    _floats = field_validator("threshold", "probability", mode="before")(_as_float)

    @field_validator("context", mode="before")
    @classmethod
    def _context_rules(cls, context: Any) -> Any:  # noqa: ANN401 - raw input, checked here
        # Checked before the type so that a reason names the entry, not a union member.
        if context is None:
            return {}  # null is "omitted", like every optional field (Jackson writes nulls)
        if not isinstance(context, dict):
            return context  # the type check names it
        if len(context) > MAX_CONTEXT_ENTRIES:
            raise ValueError(f"at most {MAX_CONTEXT_ENTRIES} entries")
        for key, value in context.items():
            if not isinstance(key, str) or not CONTEXT_KEY_PATTERN.match(key):
                raise ValueError(f"key {str(key)[:70]!r} must match [a-z0-9_]{{1,64}}")
            _check_context_value(key, value)
        return context

    @field_validator("pmf", mode="before")
    @classmethod
    def _pmf_pairs(cls, pmf: object) -> object:
        # JSON has no tuples; accept [threshold, probability] lists as pairs.
        if isinstance(pmf, list):
            return [tuple(pair) if isinstance(pair, list) else pair for pair in pmf]
        return pmf

    @model_validator(mode="after")
    def _pmf_rules(self) -> Decision:
        pmf = self.pmf
        if pmf is None:
            return self
        if not pmf:
            raise ValueError("pmf: must not be empty")
        # Runs on every decision a node logs: lists and C-level min/max/sum, not generators.
        # The entries are finite (FiniteFloat), so min and max decide the range check.
        probabilities = [p for _, p in pmf]
        if min(probabilities) < 0.0 or max(probabilities) > 1.0:
            raise ValueError("pmf: each probability must be in [0, 1]")
        if abs(sum(probabilities) - 1.0) > PMF_TOLERANCE:
            raise ValueError("pmf: probabilities must sum to 1")
        threshold = self.threshold
        if all(t != threshold and not math.isclose(t, threshold) for t, _ in pmf):
            raise ValueError("pmf: must contain the chosen threshold")
        return self


class Outcome(_Event):
    """A request finished: its exact match and the tokens it generated."""

    type: Literal["outcome"] = "outcome"
    em: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
    tokens: WireCount
    stopped_early: StrictBool | None = None
    latency_ms: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None = None

    counterfactual: tuple[tuple[float, float, int], ...] | None = None
    # Why a counterfactual that broke a rule was dropped (never on the wire): the outcome
    # itself is still valid and learned; the drop is counted by this reason.
    counterfactual_dropped: str | None = Field(default=None, exclude=True)

    _floats = field_validator("em", "latency_ms", mode="before")(_as_float)

    @model_validator(mode="before")
    @classmethod
    def _counterfactual_rules(cls, data: Any) -> Any:  # noqa: ANN401 - raw input, checked here
        if not isinstance(data, dict):
            return data
        if data.get("counterfactual") is None and "counterfactual_dropped" not in data:
            return data  # most outcomes: nothing to check, nothing to copy
        data = {k: v for k, v in data.items() if k != "counterfactual_dropped"}
        raw = data.get("counterfactual")
        if raw is None:
            return data
        try:
            data["counterfactual"] = counterfactual_entries(raw, data.get("tokens"))
        except CounterfactualError as error:
            data["counterfactual"] = None
            data["counterfactual_dropped"] = error.reason
        return data


class CounterfactualError(ValueError):
    """A counterfactual trace breaks a rule of the contract; `reason` is a short label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"counterfactual: {detail}")
        self.reason = reason


def counterfactual_entries(raw: object, tokens: object) -> tuple[tuple[float, float, int], ...]:
    """The `counterfactual` triples as the contract allows them, checked on their own.

    The rules that need the decision (each arm one of the policy's and below
    the played one) are the learner's to check, once the outcome is joined.

    Raises:
        CounterfactualError: the trace breaks a rule; its reason names which.
    """
    if not isinstance(raw, list | tuple):
        raise CounterfactualError("shape", "must be an array of [arm, em, tokens] triples")
    entries: list[tuple[float, float, int]] = []
    for entry in raw:
        if not isinstance(entry, list | tuple) or len(entry) != 3:  # noqa: PLR2004 - a triple
            raise CounterfactualError("shape", "each entry must be [arm, em, tokens]")
        arm, em, spent = entry
        if not _is_number(arm) or not math.isfinite(arm):
            raise CounterfactualError("arm", "each arm must be a finite number")
        if not _is_number(em) or not 0.0 <= em <= 1.0:
            raise CounterfactualError("em", "each em must be a number in [0, 1]")
        if type(spent) is not int or not 0 <= spent <= MAX_WIRE_INT:
            raise CounterfactualError("tokens", "each tokens must be an integer >= 0")
        entries.append((float(arm), float(em), spent))
    arms = [arm for arm, _, _ in entries]
    if any(b <= a for a, b in itertools.pairwise(arms)):
        raise CounterfactualError("order", "arms must be ascending, each at most once")
    spent_by_arm = [spent for _, _, spent in entries]
    if any(b < a for a, b in itertools.pairwise(spent_by_arm)):
        raise CounterfactualError("monotone", "tokens must not decrease with the arm")
    if type(tokens) is int and spent_by_arm and spent_by_arm[-1] > tokens:
        raise CounterfactualError("monotone", "tokens must not exceed the outcome's own")
    return tuple(entries)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


Event = Decision | Outcome


class RewardWeights(BaseModel):
    """The weights a policy was built with, echoed for operators."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    em_weight: FiniteFloat
    token_cost_per_1k: FiniteFloat


class ArmEstimates(BaseModel):
    """Per-arm estimates behind a policy, for operators."""

    model_config = ConfigDict(frozen=True, extra="allow", strict=True)

    em: list[FiniteFloat]
    tokens: list[FiniteFloat]
    n: list[FiniteFloat]


MAX_CONTROL_FRACTION = 0.5


class ControlGroup(BaseModel):
    """The policy's control group: `fraction` of requests served at `arm` (policies/sampling.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    fraction: Annotated[float, Field(ge=0.0, le=MAX_CONTROL_FRACTION, allow_inf_nan=False)]
    arm: FiniteFloat

    _floats = field_validator("fraction", "arm", mode="before")(_as_float)


class Policy(BaseModel):
    """A per-segment distribution over thresholds (controller to serving nodes)."""

    # Strict like the events: a node's parser must not see `true` or "18" where numbers go.
    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    v: Literal[1] = 1
    segment: str
    version: WireCount
    issued_at: FiniteFloat
    model_id: str = ""
    # What an arm means to the node (SCHEMA 1.1); a 1.0 policy has none and means thresholds.
    knob: Knob = DEFAULT_KNOB
    arms: list[FiniteFloat]
    pmf: list[FiniteFloat]
    greedy: FiniteFloat
    reward: RewardWeights | None = None
    estimates: ArmEstimates | None = None
    control: ControlGroup | None = None
    signature: str | None = None

    _version = field_validator("v", mode="before")(_check_version)

    @field_validator("segment")
    @classmethod
    def _segment_rules(cls, segment: str) -> str:
        return _check_segment(segment)

    @model_validator(mode="after")
    def _pmf_rules(self) -> Policy:
        if not self.arms:
            raise ValueError("arms: must not be empty")
        problem = arm_problem(self.knob, self.arms)
        if problem is not None:
            raise ValueError(f"{problem[0]}: {problem[1]}")
        if len(self.arms) != len(self.pmf):
            raise ValueError("pmf: must have one entry per arm")
        if any(not 0.0 <= p <= 1.0 for p in self.pmf):
            raise ValueError("pmf: each entry must be in [0, 1]")
        if abs(sum(self.pmf) - 1.0) > PMF_TOLERANCE:
            raise ValueError("pmf: must sum to 1")
        if all(not math.isclose(arm, self.greedy) for arm in self.arms):
            raise ValueError("greedy: must be one of the arms")
        if self.control is not None and all(
            not math.isclose(arm, self.control.arm) for arm in self.arms
        ):
            raise ValueError("control.arm: must be one of the arms")
        return self

    @model_serializer(mode="wrap")
    def _as_written(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        document: dict[str, Any] = handler(self)
        if self.knob == DEFAULT_KNOB:
            # Thresholds are what a policy without `knob` means: a confidence policy is
            # written as 1.0 wrote it, byte for byte (and signs the same).
            document.pop("knob", None)
        elif self.knob == "token_budget":
            # Budgets go out as JSON integers, what an engine's budget parameter takes.
            document["arms"] = [int(a) for a in self.arms]
            document["greedy"] = int(self.greedy)
        return document

    def probability_of(self, threshold: float) -> float:
        """Probability the policy gives to `threshold` (0 if it is not an arm)."""
        for arm, p in zip(self.arms, self.pmf, strict=True):
            if math.isclose(arm, threshold):
                return p
        return 0.0
