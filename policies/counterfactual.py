"""Counterfactual traces for serving nodes: what a run observed at the arms below its own.

A run at arm a passes the point where every lower arm would have stopped it
(docs/wire-contract.md, "Counterfactual outcomes"), so a node that probes its
reasoning as it runs knows, after the request, what each lower arm would have
returned on this very request. These helpers turn what the node recorded into
the outcome's `counterfactual` entries, for both knobs:

* `confidence_trace`: the node's probes (tokens so far, confidence, em of the
  probed answer); the arm b stops at the first probe whose confidence >= b.
* `budget_trace`: the answers the node asked for at each lower budget its
  reasoning passed.

Either way, a lower arm whose stop the run never reached (no probe reached
its confidence; reasoning ended before its budget) would have let the request
run to its natural end, which is this very run: its entry is the outcome's
own em and tokens. That was observed, not predicted, and leaving it out would
bias the learner, which counts every lower arm as observed whenever a higher
one is played: lower arms would be seen only on the requests whose confidence
rose, or whose reasoning ran long. docs/counterfactual-traces.md is the guide
for node authors in any language.

Pure and light: the standard library and one constant of the wire contract.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from stopbandit.streams.events import MAX_WIRE_INT

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

# [arm, em, tokens]: one entry of an outcome's `counterfactual`, as Outcome holds it.
Entry: TypeAlias = tuple[float, float, int]


@dataclass(frozen=True)
class Probe:
    """One probe of the node's reasoning during the run (a DEER trial answer, a Dynasor probe).

    Attributes:
        tokens: tokens the request had generated when the probe was taken (reasoning so far).
        confidence: the node's confidence signal at the probe, in [0, 1].
        em: the probed answer, graded exactly as the final answer is graded, in [0, 1].
        answer_tokens: tokens of the probed answer, when the node knows them (DEER
            generates the trial answer); otherwise `confidence_trace`'s `answer_tokens`.
    """

    tokens: int
    confidence: float
    em: float
    answer_tokens: int | None = None


@dataclass(frozen=True)
class BudgetAnswer:
    """The answer a budget-driven node asked for when its reasoning reached a lower budget.

    Attributes:
        budget: the budget (one of the policy's arms) at which the answer was asked for.
        em: that answer, graded exactly as the final answer is graded, in [0, 1].
        tokens: tokens the request would have generated in all had it stopped there:
            the reasoning up to the budget plus that answer's tokens.
    """

    budget: float
    em: float
    tokens: int


def confidence_trace(
    arms: Sequence[float],
    played: float,
    probes: Iterable[Probe | tuple[int, float, float]],
    *,
    em: float,
    tokens: int,
    answer_tokens: int | Callable[[Probe], int] | None = None,
) -> tuple[Entry, ...]:
    """The `counterfactual` of a run at confidence threshold `played`, from its probes.

    Each arm b below `played` stops at the first probe whose confidence is >= b;
    its entry is that probe's em and the tokens the request would have generated
    in all (the probe's tokens plus its answer's). An arm no probe reached would
    have run to the natural end, as this run did: its entry is the outcome's own
    `em` and `tokens`.

    Args:
        arms: the policy's arms (thresholds in [0, 1], ascending).
        played: the threshold the request ran at (the decision's); one of `arms`.
        probes: every probe of the run at which the node's rule could stop, in the
            order taken; (tokens, confidence, em) triples are read as `Probe`s. A probe
            at which the rule may not stop (a minimum-tokens warm-up) is left out.
        em: the outcome's em.
        tokens: the outcome's tokens (reasoning and answer).
        answer_tokens: the length of a probed answer when the probe does not carry its
            own: a number for every probe, or a function of the probe.

    Returns:
        The entries, ascending by arm, each strictly below `played`; empty at the lowest arm.

    Raises:
        ValueError: the arms, the outcome or the probes break the contract or each
            other (the message says which), or a probe's answer length is unknown.
    """
    arms = _check_arms(arms)
    for arm in arms:
        if not 0.0 <= arm <= 1.0:
            raise ValueError(f"arms: a confidence threshold must be in [0, 1], not {arm}")
    played_index = _index_of(arms, played)
    _check_outcome(em, tokens)
    checked = _check_probes(probes, tokens)
    # The run at `played` stops at the first probe reaching it, so no earlier probe may.
    # The top arm is exempt: it is the reference arm, which never stops early.
    if played_index < len(arms) - 1:
        for i, probe in enumerate(checked[:-1]):
            if probe.confidence >= arms[played_index]:
                raise ValueError(
                    f"probes[{i}]: confidence {probe.confidence} reaches the played arm "
                    f"{arms[played_index]}, yet the run went on: these are not the probes "
                    "of a run at that arm"
                )
    entries: list[Entry] = []
    for arm in arms[:played_index]:
        stop = next((probe for probe in checked if probe.confidence >= arm), None)
        if stop is None:
            entries.append((arm, float(em), tokens))
        else:
            spent = stop.tokens + _answer_length(stop, answer_tokens)
            entries.append((arm, float(stop.em), spent))
    return _monotone(entries, tokens)


def budget_trace(
    arms: Sequence[float],
    played: float,
    answers: Iterable[BudgetAnswer | tuple[float, float, int]],
    *,
    em: float,
    tokens: int,
    reasoning_tokens: int,
) -> tuple[Entry, ...]:
    """The `counterfactual` of a run at thinking-token budget `played`, from its answers.

    An arm b below `played` that the reasoning reached (`reasoning_tokens` >= b)
    gets the answer the node asked for at b; without one, b is left out (not
    observed). An arm the reasoning never passed (`reasoning_tokens` <= b, no
    answer at b) would have let the request end naturally, as this run did:
    its entry is the outcome's own `em` and `tokens`.

    Args:
        arms: the policy's arms (budgets, integers >= 1, ascending).
        played: the budget the request ran at (the decision's); one of `arms`.
        answers: the answers at lower budgets, in any order; (budget, em, tokens)
            triples are read as `BudgetAnswer`s. An answer at the played budget is
            the outcome itself and is ignored.
        em: the outcome's em.
        tokens: the outcome's tokens (reasoning and answer).
        reasoning_tokens: the tokens the run's reasoning took (the played budget when
            the budget stopped it; less when it ended naturally).

    Returns:
        The entries, ascending by arm, each strictly below `played`; empty at the lowest arm.

    Raises:
        ValueError: the arms, the outcome or the answers break the contract or each
            other (the message says which).
    """
    arms = _check_arms(arms)
    for arm in arms:
        if arm < 1 or arm != math.floor(arm):
            raise ValueError(f"arms: a token budget must be an integer >= 1, not {arm}")
    played_index = _index_of(arms, played)
    _check_outcome(em, tokens)
    _check_count("reasoning_tokens", reasoning_tokens)
    if reasoning_tokens > min(tokens, arms[played_index]):
        raise ValueError(
            f"reasoning_tokens: {reasoning_tokens} is more than the outcome's tokens ({tokens}) "
            f"or the played budget ({arms[played_index]}, which stops reasoning there)"
        )
    by_arm = _answers_by_arm(arms, played_index, answers, reasoning_tokens)
    entries: list[Entry] = []
    for index, arm in enumerate(arms[:played_index]):
        if index in by_arm:
            entries.append((arm, float(by_arm[index].em), by_arm[index].tokens))
        elif reasoning_tokens <= arm:
            entries.append((arm, float(em), tokens))
    return _monotone(entries, tokens)


def _answers_by_arm(
    arms: list[float],
    played_index: int,
    answers: Iterable[BudgetAnswer | tuple[float, float, int]],
    reasoning_tokens: int,
) -> dict[int, BudgetAnswer]:
    by_arm: dict[int, BudgetAnswer] = {}
    for i, raw in enumerate(answers):
        answer = raw if isinstance(raw, BudgetAnswer) else BudgetAnswer(*raw)
        index = _index_of(arms, answer.budget, f"answers[{i}].budget")
        if index > played_index:
            raise ValueError(
                f"answers[{i}]: budget {answer.budget} is above the played {arms[played_index]}:"
                " the run never reached it"
            )
        if index == played_index:
            continue  # the outcome itself
        if reasoning_tokens < arms[index]:
            raise ValueError(
                f"answers[{i}]: the reasoning ended at {reasoning_tokens} tokens, before "
                f"budget {arms[index]}: the run never reached it"
            )
        _check_em(f"answers[{i}].em", answer.em)
        _check_count(f"answers[{i}].tokens", answer.tokens)
        if index in by_arm:
            raise ValueError(f"answers[{i}]: a second answer at budget {arms[index]}")
        by_arm[index] = answer
    return by_arm


def _monotone(entries: list[Entry], tokens: int) -> tuple[Entry, ...]:
    """Cap each entry's tokens at the next higher one's, the top one at the outcome's.

    The stop points themselves never go backwards; the answers' lengths vary, so a
    long answer at an early stop can come out a few tokens above a short one at a
    later stop, or above the run itself. The contract's monotone rule (docs/wire-
    contract.md) forbids that, so the long one is capped: off by at most the
    difference in answer lengths, where leaving the arm out would bias its em.
    """
    ceiling = tokens
    capped: list[Entry] = []
    for arm, em, spent in reversed(entries):
        ceiling = min(spent, ceiling)
        capped.append((arm, em, ceiling))
    return tuple(reversed(capped))


def _check_arms(arms: Sequence[float]) -> list[float]:
    values: list[float] = []
    for arm in arms:
        if not _is_number(arm) or not math.isfinite(arm):
            raise ValueError(f"arms: each arm must be a finite number, not {arm!r}")
        values.append(float(arm))
    if not values:
        raise ValueError("arms: must not be empty")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ValueError(f"arms: must be strictly ascending, got {values}")
    return values


def _index_of(arms: list[float], value: float, what: str = "played") -> int:
    # As the controller matches arms (streams/arms.py): JSON may change the last bits.
    if _is_number(value):
        for index, arm in enumerate(arms):
            if math.isclose(arm, value):
                return index
    raise ValueError(f"{what}: {value!r} is not one of the arms {arms}")


def _check_outcome(em: float, tokens: int) -> None:
    _check_em("em", em)
    _check_count("tokens", tokens)


def _check_em(what: str, em: float) -> None:
    if not _is_number(em) or not 0.0 <= em <= 1.0:
        raise ValueError(f"{what}: must be a number in [0, 1], not {em!r}")


def _check_count(what: str, count: int) -> None:
    # bool is an int to Python, never a token count to the contract.
    if type(count) is not int or not 0 <= count <= MAX_WIRE_INT:
        raise ValueError(f"{what}: must be an integer >= 0, not {count!r}")


def _check_probes(probes: Iterable[Probe | tuple[int, float, float]], tokens: int) -> list[Probe]:
    checked: list[Probe] = []
    for i, raw in enumerate(probes):
        probe = raw if isinstance(raw, Probe) else Probe(*raw)
        _check_count(f"probes[{i}].tokens", probe.tokens)
        if not _is_number(probe.confidence) or not 0.0 <= probe.confidence <= 1.0:
            raise ValueError(f"probes[{i}].confidence: must be in [0, 1], not {probe.confidence!r}")
        _check_em(f"probes[{i}].em", probe.em)
        if probe.answer_tokens is not None:
            _check_count(f"probes[{i}].answer_tokens", probe.answer_tokens)
        if checked and probe.tokens < checked[-1].tokens:
            raise ValueError(
                f"probes[{i}]: taken at {probe.tokens} tokens, before the previous probe "
                f"({checked[-1].tokens}): probes must be in the order taken"
            )
        if probe.tokens > tokens:
            raise ValueError(
                f"probes[{i}]: taken at {probe.tokens} tokens, after the run ended ({tokens})"
            )
        checked.append(probe)
    return checked


def _answer_length(probe: Probe, answer_tokens: int | Callable[[Probe], int] | None) -> int:
    if probe.answer_tokens is not None:
        return probe.answer_tokens
    if answer_tokens is None:
        raise ValueError(
            f"the probe at {probe.tokens} tokens carries no answer_tokens and none was given"
        )
    length = answer_tokens if isinstance(answer_tokens, int) else answer_tokens(probe)
    _check_count("answer_tokens", length)
    return length


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
