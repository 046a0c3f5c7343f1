"""The learning baselines of ARCHITECTURE.md's table, as simulator agents.

- `ThompsonAgent`: per-segment Thompson sampling on separate EM (Beta) and
  token (Normal) estimates, P(best) computed from posterior draws at each
  publish; no sharing across segments, no safe start.
- `VWEpsilonAgent`: plain Vowpal Wabbit `--cb_explore_adf --epsilon 0.05 -q sa`
  on the scalar reward (cost = -reward), segment features shared, the arm as
  the action.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import numpy as np
import vowpal_wabbit_next as vw

from stopbandit.controller.learners.outcome import shared_features
from stopbandit.policies.reward import reward
from stopbandit.streams.arms import DEFAULT_KNOB, Knob
from stopbandit.streams.events import Decision, Outcome, Policy

if TYPE_CHECKING:
    from stopbandit.controller.config import RewardConfig

_DRAWS = 2000


def _policy(
    segment: str, arms: list[float], pmf: np.ndarray, version: int, now: float, *, knob: Knob
) -> Policy:
    pmf = np.maximum(pmf, 0.0)
    pmf = pmf / pmf.sum()
    rounded = [round(float(p), 6) for p in pmf]
    top = int(np.argmax(rounded))
    rounded[top] = round(rounded[top] + 1.0 - sum(rounded), 9)
    return Policy(
        segment=segment,
        version=version,
        issued_at=now,
        knob=knob,
        arms=arms,
        pmf=rounded,
        greedy=arms[int(np.argmax(pmf))],
    )


class ThompsonAgent:
    """Per-segment Thompson sampling with separate EM and token posteriors."""

    def __init__(
        self, arms: list[float], weights: RewardConfig, seed: int, knob: Knob = DEFAULT_KNOB
    ) -> None:
        self.arms = arms
        self.knob = knob
        self.weights = weights
        self.rng = np.random.default_rng(seed)
        self.stats: dict[str, np.ndarray] = {}  # per arm: n, em successes, tokens sum, tokens sq
        self.published: dict[str, Policy] = {}
        self.version = 0

    def policy_for(self, segment: str) -> Policy | None:
        """The last published policy, uniform before the first."""
        policy = self.published.get(segment)
        if policy is None:
            uniform = np.full(len(self.arms), 1.0 / len(self.arms))
            return _policy(segment, self.arms, uniform, 0, 0.0, knob=self.knob)
        return policy

    def observe(self, decision: Decision, outcome: Outcome, now: float) -> None:  # noqa: ARG002
        """Count the outcome on the chosen arm."""
        stats = self.stats.setdefault(decision.segment, np.zeros((len(self.arms), 4)))
        k = self.arms.index(decision.threshold)
        stats[k] += (1.0, outcome.em, outcome.tokens, float(outcome.tokens) ** 2)

    def publish(self, now: float) -> None:
        """P(best) per arm from posterior draws becomes the pmf."""
        for segment, stats in self.stats.items():
            n, em, tok, tok2 = stats.T
            em_draws = self.rng.beta(1.0 + em, 1.0 + n - em, size=(_DRAWS, len(self.arms)))
            mean = np.divide(tok, n, out=np.zeros_like(tok), where=n > 0)
            var = np.divide(tok2, n, out=np.zeros_like(tok), where=n > 0) - mean**2
            pooled_sd = float(np.sqrt(np.mean(var[n > 1]))) if (n > 1).any() else 1e4
            sd = np.where(n > 0, np.sqrt(np.maximum(var, pooled_sd**2) / np.maximum(n, 1)), 1e4)
            tok_draws = self.rng.normal(mean, sd, size=(_DRAWS, len(self.arms)))
            rewards = reward(em_draws, tok_draws, self.weights)
            pmf = np.bincount(np.argmax(rewards, axis=1), minlength=len(self.arms)) / _DRAWS
            self.version += 1
            self.published[segment] = _policy(
                segment, self.arms, pmf, self.version, now, knob=self.knob
            )


class VWEpsilonAgent:
    """Vowpal Wabbit contextual bandit, epsilon-greedy, on the scalar reward."""

    def __init__(
        self,
        arms: list[float],
        weights: RewardConfig,
        epsilon: float = 0.05,
        knob: Knob = DEFAULT_KNOB,
    ) -> None:
        self.arms = arms
        self.knob = knob
        self.weights = weights
        self.workspace = vw.Workspace(
            ["--cb_explore_adf", "--epsilon", str(epsilon), "-q", "sa", "--quiet"]
        )
        self.parser = vw.TextFormatParser(self.workspace)
        self.contexts: dict[str, str] = {}
        self.published: dict[str, Policy] = {}
        self.version = 0

    def _example(self, shared: str, label: tuple[int, float, float] | None) -> list[vw.Example]:
        lines = [self.parser.parse_line("shared " + shared)]
        for k in range(len(self.arms)):
            prefix = ""
            if label is not None and label[0] == k:
                prefix = f"{k}:{label[1]!r}:{label[2]!r} "
            lines.append(self.parser.parse_line(f"{prefix}|a a{k}"))
        return lines

    def policy_for(self, segment: str) -> Policy | None:
        """The last published policy, uniform before the first."""
        policy = self.published.get(segment)
        if policy is None:
            uniform = np.full(len(self.arms), 1.0 / len(self.arms))
            return _policy(segment, self.arms, uniform, 0, 0.0, knob=self.knob)
        return policy

    def observe(self, decision: Decision, outcome: Outcome, now: float) -> None:  # noqa: ARG002
        """Learn cost = -reward of the chosen arm at its logged probability."""
        shared = self.contexts.setdefault(
            decision.segment, shared_features(decision.segment, decision.context)
        )
        cost = -reward(outcome.em, outcome.tokens, self.weights)
        k = self.arms.index(decision.threshold)
        self.workspace.learn_one(self._example(shared, (k, cost, decision.probability)))

    def publish(self, now: float) -> None:
        """VW's exploration pmf for each segment's context becomes its policy."""
        for segment, shared in self.contexts.items():
            prediction = self.workspace.predict_one(self._example(shared, None))
            pmf = np.zeros(len(self.arms))
            # cb_explore_adf predicts (action, probability) pairs.
            for action, probability in cast("list[tuple[int, float]]", prediction):
                pmf[action] = probability
            self.version += 1
            self.published[segment] = _policy(
                segment, self.arms, pmf, self.version, now, knob=self.knob
            )
