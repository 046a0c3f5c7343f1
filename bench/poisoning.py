"""Poisoning (issue 14): what one fake segment or a few huge outcomes move, one run.

For each seed, mixed-reasoning learns 20,000 interactions at token cost
0.02 (tests/scenario/test_poisoning.py's clean run); then each case adds
one fake segment of constant outcomes (EM 1, 1,000 tokens) at every arm,
at the two end arms, or at the cheapest arm only, of each size, and the
fake segment is forgotten again before the next case (its statistics are
all a real segment's beliefs see of it: the shared VW models only
cold-start segments without data, and every real one has data). Two more
kinds of case:

- `benign`, the control: a new segment as real as the others (outcomes
  drawn from math500's true curves, uniform over the arms). What it moves
  is what any extra segment moves: greedy arms the clean beliefs held in a
  near-tie.
- `max-tokens`, a few events against a segment's own arm: 1 or 3 outcomes
  of `limits.max_tokens` tokens (the most accepted) at each real segment's
  clean greedy arm in turn (its statistics restored after).

Per (seed, case) it prints the most any real segment's estimated reward
moved (at any arm, relative to the segment's mean over arms), and `*`'s;
then every real segment whose greedy arm moved against the clean run of the
same seed, and the `*` fallback's: the move in arm steps, its cost at the
truth (the true reward of the clean greedy arm minus the poisoned one's;
the fallback's truth is the real segments' rewards weighted by their
traffic, what an unknown segment drawn from the real traffic is worth), and
how near a tie the clean beliefs held the two arms (their estimated reward
difference, in reward and in sds of it). A near-tie flipping is noise, not
poisoning: the clean run had no evidence for its choice. The summary gives,
per kind of case, the moves, how many of them are far (the scenario test's
criterion: more than one arm step or `TRUE_LOSS_MARGIN` of true reward,
from a clean gap above `NEAR_TIE`), the farthest, the costliest, and the
widest clean gap a move crossed.

    .venv/bin/python bench/poisoning.py                  # seeds 1-4, every case: ~15 s
    .venv/bin/python bench/poisoning.py --seeds 1-8 --sizes 300,3000,20000 --huge 1,3
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from seeds import seed_list

from stopbandit.controller.commands.simulate import simulation_config
from stopbandit.controller.core import ControllerCore, fallback_beliefs
from stopbandit.controller.sim.scenario import SHIPPED_DIR, Truth, load_scenario
from stopbandit.controller.sim.simulate import ControllerAgent, Simulation
from stopbandit.policies.reward import reward, reward_cov
from stopbandit.streams.events import FALLBACK_SEGMENT
from stopbandit.streams.join import Interaction

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from stopbandit.policies.builder import ArmBeliefs

MIXED = SHIPPED_DIR / "mixed-reasoning.yaml"
REAL_INTERACTIONS = 20_000
TOKEN_COST = 0.02
FAKE = "fake/constant"
PLACEMENTS = ("every-arm", "two-ends", "cheapest-arm")
# The control: a new segment as real as the others (math500's true curves, uniform over the
# arms), which moves near-tied greedy arms as much as any extra segment does.
BENIGN = "benign"
BENIGN_LIKE = "math/math500/qwen3-14b"
# tests/scenario/test_poisoning.py's criterion: a move is far when the clean beliefs held the
# poisoned arm more than NEAR_TIE below the clean greedy arm, and it is more than one arm step
# or costs more than TRUE_LOSS_MARGIN at the truth.
NEAR_TIE = 0.02
TRUE_LOSS_MARGIN = 0.01


class Move(NamedTuple):
    """One greedy arm that moved."""

    segment: str
    clean: float
    poisoned: float
    steps: int
    true_loss: float
    clean_gap: float
    clean_gap_sd: float

    @property
    def far(self) -> bool:
        """Moved far against the clean run's own evidence (the scenario test's criterion)."""
        return self.clean_gap > NEAR_TIE and (self.steps > 1 or self.true_loss > TRUE_LOSS_MARGIN)


def _learned(seed: int, interactions: int) -> ControllerCore:
    scenario = load_scenario(MIXED)
    config = simulation_config(scenario, None, token_cost=TOKEN_COST)
    core = ControllerCore(config)
    Simulation(
        scenario,
        ControllerAgent(core),
        seed=seed,
        weights=config.reward,
        fallback_arm=config.default_arm,
    ).run(interactions)
    return core


def _beliefs(core: ControllerCore) -> dict[str, ArmBeliefs]:
    estimates = core.learner.estimates_all()
    real = {s: b for s, b in estimates.items() if s != FAKE}
    real[FALLBACK_SEGMENT] = fallback_beliefs(core.learner, estimates)
    return real


def _greedy(core: ControllerCore, beliefs: dict[str, ArmBeliefs]) -> dict[str, int]:
    return {
        s: core.builder.decide(b, core.weights, segment=None if s == FALLBACK_SEGMENT else s).greedy
        for s, b in beliefs.items()
    }


def _true_rewards(core: ControllerCore) -> dict[str, NDArray[np.float64]]:
    truth = Truth(load_scenario(MIXED))
    rewards = truth.rewards(core.config.reward)
    table = {key: rewards[i] for i, key in enumerate(truth.keys)}
    table[FALLBACK_SEGMENT] = truth.share @ rewards
    return table


def _fake(core: ControllerCore, count: int, placement: str, seed: int) -> None:
    arms = list(core.config.arms)
    if placement == BENIGN:
        _benign(core, count, seed)
        return
    played = {"every-arm": arms, "two-ends": [arms[0], arms[-1]], "cheapest-arm": [arms[0]]}
    chosen = played[placement]
    for i in range(count):
        core.learn(_interaction(i, chosen[i % len(chosen)], 1.0 / len(chosen), 1.0, 1000))


def _benign(core: ControllerCore, count: int, seed: int) -> None:
    truth = Truth(load_scenario(MIXED))
    like = truth.keys.index(BENIGN_LIKE)
    rng = np.random.default_rng(seed)
    arms = list(core.config.arms)
    sigma2 = np.log1p(truth.token_cv[like] ** 2)
    for i in range(count):
        k = i % len(arms)
        em = float(rng.random() < truth.em[like, k])
        noise = rng.lognormal(-sigma2 / 2.0, sigma2**0.5)
        tokens = max(1, round(float(truth.tokens[like, k] * noise)))
        core.learn(_interaction(i, arms[k], 1.0 / len(arms), em, tokens))


def _interaction(
    i: int,
    threshold: float,
    probability: float,
    em: float,
    tokens: int,
    *,
    segment: str = FAKE,
) -> Interaction:
    return Interaction(
        request_id=f"fake-{i}",
        segment=segment,
        context={},
        threshold=threshold,
        probability=probability,
        policy_version=1,
        em=em,
        tokens=tokens,
        decision_ts=0.0,
        outcome_ts=0.0,
    )


def _gap(core: ControllerCore, beliefs: ArmBeliefs, a: int, b: int) -> tuple[float, float]:
    """Estimated reward of arm a minus arm b under `beliefs`: in reward, and in sds of it."""
    mean = reward(beliefs.em, beliefs.tokens, core.weights)
    cov = reward_cov(beliefs.em_cov, beliefs.tokens_cov, core.weights)
    var = cov[a, a] + cov[b, b] - 2.0 * cov[a, b]
    gap = float(mean[a] - mean[b])
    return gap, gap / max(var, 1e-18) ** 0.5


def _shift(core: ControllerCore, clean: ArmBeliefs, poisoned: ArmBeliefs) -> float:
    """Most any arm's estimated reward moved, relative to the segment's mean over arms."""
    before = reward(clean.em, clean.tokens, core.weights)
    after = reward(poisoned.em, poisoned.tokens, core.weights)
    moved = (after - after.mean()) - (before - before.mean())
    return float(np.abs(moved).max())


class Case(NamedTuple):
    """One poison on one seed's clean run."""

    name: str
    moves: list[Move]
    # Most any real segment's estimated reward moved (relative to its mean over arms).
    real_shift: float
    fallback_shift: float


def _case(
    core: ControllerCore,
    name: str,
    clean_beliefs: dict[str, ArmBeliefs],
    clean: dict[str, int],
    truth: dict[str, NDArray[np.float64]],
) -> Case:
    """The moves and shifts of the poisoned `core` against the clean run."""
    arms = core.config.arms
    beliefs = _beliefs(core)
    poisoned = _greedy(core, beliefs)
    moves = [
        Move(
            s,
            arms[clean[s]],
            arms[poisoned[s]],
            abs(poisoned[s] - clean[s]),
            float(truth[s][clean[s]] - truth[s][poisoned[s]]),
            *_gap(core, clean_beliefs[s], clean[s], poisoned[s]),
        )
        for s in clean
        if poisoned[s] != clean[s]
    ]
    shifts = {s: _shift(core, clean_beliefs[s], beliefs[s]) for s in clean}
    fallback_shift = shifts.pop(FALLBACK_SEGMENT)
    return Case(name, moves, max(shifts.values()), fallback_shift)


def _huge_tokens(core: ControllerCore, segment: str, arm: int, count: int) -> None:
    """`count` outcomes of `limits.max_tokens` (the most accepted) at `segment`'s `arm`."""
    threshold = core.config.arms[arm]
    for i in range(count):
        tokens = core.config.limits.max_tokens
        core.learn(_interaction(i, threshold, 1.0, 1.0, tokens, segment=segment))


def sweep(seed: int, sizes: list[int], huge: list[int], interactions: int) -> list[Case]:
    """Every case on one seed's clean run: the moves of each."""
    core = _learned(seed, interactions)
    truth = _true_rewards(core)
    clean_beliefs = _beliefs(core)
    clean = _greedy(core, clean_beliefs)
    rows: list[Case] = []
    for placement in (*PLACEMENTS, BENIGN):
        for count in sizes:
            _fake(core, count, placement, seed)
            rows.append(_case(core, f"{placement} x{count}", clean_beliefs, clean, truth))
            core.learner.forget(FAKE)
    for count in huge:
        for segment in sorted(s for s in clean if s != FALLBACK_SEGMENT):
            saved = copy.deepcopy(core.learner.stats[segment])
            _huge_tokens(core, segment, clean[segment], count)
            name = f"max-tokens x{count} {segment.split('/')[1]}"
            rows.append(_case(core, name, clean_beliefs, clean, truth))
            core.learner.stats[segment] = saved
            core.learner.dirty.add(segment)
    if _greedy(core, _beliefs(core)) != clean:  # undoing the poison must give the clean run back
        raise AssertionError(f"seed {seed}: the clean greedy arms did not come back")
    return rows


def main() -> int:
    """Run every seed and case; print the table and the worst figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1-4")
    parser.add_argument("--sizes", default="300,3000,20000", help="fake interactions per case")
    parser.add_argument(
        "--huge", default="1,3", help="outcomes of limits.max_tokens per case (own greedy arm)"
    )
    parser.add_argument("--interactions", type=int, default=REAL_INTERACTIONS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    huge = [int(s) for s in filter(None, args.huge.split(","))]
    started = time.perf_counter()
    print(
        f"mixed-reasoning, {args.interactions:,} real interactions at cost {TOKEN_COST}, "
        "then one fake segment (EM 1, 1,000 tokens); moved greedy arms vs the clean run"
    )
    print(
        "  shift: most any estimated reward moved (real segments / *); per moved arm: clean ->"
        " poisoned (arm steps, true reward loss, clean estimated gap in reward and in sd)"
    )
    cases: dict[str, list[Case]] = {}
    for seed in seed_list(args.seeds):
        for case in sweep(seed, sizes, huge, args.interactions):
            cases.setdefault(case.name.split(" ")[0], []).append(case)
            text = "; ".join(
                f"{m.segment}: {m.clean:g} -> {m.poisoned:g} ({m.steps}, {m.true_loss:+.4f}, "
                f"{m.clean_gap:.4f}, {m.clean_gap_sd:.1f} sd)"
                for m in case.moves
            )
            shift = f"{case.real_shift:.4f}/{case.fallback_shift:.4f}"
            print(f"seed {seed} {case.name:<20} {shift}  {text or '-'}")
    for kind, group in cases.items():
        moves = [m for c in group for m in c.moves]
        for label, some in (
            ("real", [m for m in moves if m.segment != FALLBACK_SEGMENT]),
            ("*", [m for m in moves if m.segment == FALLBACK_SEGMENT]),
        ):
            print(
                f"{kind:<13} {label:<4}: {len(some):>2} moved ({sum(m.far for m in some)} far) "
                f"in {len(group)} cases, "
                f"at most {max((m.steps for m in some), default=0)} arm steps, worst true loss "
                f"{max((m.true_loss for m in some), default=0.0):+.4f}, worst clean gap "
                f"{max((m.clean_gap for m in some), default=0.0):.4f}"
            )
        print(
            f"{kind:<13} shift: real {max(c.real_shift for c in group):.4f}, "
            f"* {max(c.fallback_shift for c in group):.4f}"
        )
    print(f"{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
