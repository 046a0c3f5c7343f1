"""Write the held-out scenarios in tests/data/scenarios (deterministic; re-run to regenerate).

The learner is tuned on nothing here: these fleets have other segment mixes,
30 segments with rare ones, and drift, with curves from a simple knee model:
tokens fall as the threshold drops (a power law between `floor` and 1), EM
holds its peak down to a segment-specific knee, then falls steeply; some
segments overthink (EM slightly lower at 1.0 than at the peak).

`early-answers` is hand-set instead: easy segments (factoid QA, easy
arithmetic) whose answers converge early, so their best arm is 0.5 or 0.7
at both token costs the benches use, next to one hard segment that needs
long chains. The generator checks those best arms before writing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

ARMS = [0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0]
OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "scenarios"


OVERTHINK_FROM = 0.95
# The token costs (per 1k tokens, EM weight 1) at which early-answers' best arms must hold.
CHECK_COSTS = (0.02, 0.005)

EARLY_ANSWERS_NOTE = """\
# Easy segments whose answers converge early, next to one hard segment.
# Curves are [token_fraction, em_probability] per arm, hand-set after the
# shape of published findings (illustrative, not read off their tables):
#   Chen et al., "Do NOT Think That Much for 2+3=?" (arXiv 2412.21187):
#     on easy math (ASDIV, GSM8K) o1-like models such as QwQ-32B usually
#     reach their final answer in the first solution round; the later
#     rounds re-verify it, so most of the chain adds tokens and no accuracy,
#     and a little is lost when a re-check talks the model out of it.
#   Answer convergence / Learn-to-Stop (arXiv 2506.02536): on factoid QA
#     (NQ) QwQ-32B's answer is fixed about halfway through its reasoning.
#   Hard competition math (AIME) needs the long chains (as DEER, arXiv
#     2504.15895, reports for QwQ-32B on AIME24: 0.933 of tokens at 0.95).
# Best arm at token cost 0.02 and 0.005: triviaqa 0.5, gsm8k 0.5,
# hotpotqa 0.7, asdiv 0.7, aime 0.95 (the generator checks these).
"""
# key, features, traffic, base_tokens, token_cv, the best arm at both costs, curve per arm.
EARLY_ANSWERS: list[tuple[str, dict[str, str], float, int, float, float, list[list[float]]]] = [
    (
        "qa/triviaqa/qwq-32b",
        {"task": "factoid_qa", "model": "qwq-32b"},
        0.30,
        900,
        0.5,
        0.5,
        [
            [0.28, 0.744],
            [0.36, 0.744],
            [0.43, 0.743],
            [0.50, 0.742],
            [0.56, 0.740],
            [0.75, 0.734],
            [1.00, 0.729],
        ],
    ),
    (
        "qa/hotpotqa/r1-distill-qwen-7b",
        {"task": "multihop_qa", "model": "r1-distill-qwen-7b"},
        0.20,
        1200,
        0.5,
        0.7,
        [
            [0.30, 0.590],
            [0.38, 0.612],
            [0.45, 0.612],
            [0.53, 0.611],
            [0.60, 0.610],
            [0.78, 0.606],
            [1.00, 0.603],
        ],
    ),
    (
        "math/asdiv/qwen3-14b",
        {"task": "asdiv", "model": "qwen3-14b"},
        0.20,
        1800,
        0.6,
        0.7,
        [
            [0.32, 0.925],
            [0.41, 0.948],
            [0.48, 0.948],
            [0.55, 0.947],
            [0.60, 0.946],
            [0.80, 0.944],
            [1.00, 0.942],
        ],
    ),
    (
        "math/gsm8k/qwq-32b",
        {"task": "gsm8k", "model": "qwq-32b"},
        0.20,
        1400,
        0.5,
        0.5,
        [
            [0.33, 0.953],
            [0.42, 0.953],
            [0.49, 0.952],
            [0.56, 0.952],
            [0.62, 0.951],
            [0.81, 0.948],
            [1.00, 0.945],
        ],
    ),
    (
        "hard/aime25/qwq-32b",
        {"task": "aime25", "model": "qwq-32b"},
        0.10,
        11000,
        0.7,
        0.95,
        [
            [0.45, 0.280],
            [0.60, 0.420],
            [0.74, 0.550],
            [0.87, 0.630],
            [0.93, 0.660],
            [0.97, 0.655],
            [1.00, 0.640],
        ],
    ),
]


def curve(rng: np.random.Generator) -> dict[str, list[float]]:
    """One segment's [token_fraction, em_probability] per arm, from random knee parameters."""
    floor = rng.uniform(0.2, 0.6)
    power = rng.uniform(1.5, 5.0)
    peak = rng.uniform(0.3, 0.95)
    knee = rng.choice([0.7, 0.8, 0.9, 0.95, 0.99])
    drop = rng.uniform(0.05, 0.5) * peak
    overthink = rng.uniform(0.0, 0.05) * peak
    points: dict[str, list[float]] = {}
    for t in ARMS:
        fraction = floor + (1 - floor) * ((t - 0.5) / 0.5) ** power
        em = (
            peak
            - drop * max(0.0, knee - t) / (knee - 0.5 + 1e-9)
            - overthink * (t - OVERTHINK_FROM) / 0.05 * (t > OVERTHINK_FROM)
        )
        points[f"{t:g}"] = [round(float(fraction), 3), round(float(min(max(em, 0.01), 0.99)), 3)]
    points["1"] = points.pop("1")
    return {("1.0" if k == "1" else k): v for k, v in points.items()}


def segments(rng: np.random.Generator, count: int, traffic: list[float]) -> list[dict[str, Any]]:
    """`count` segments over a few tasks and models, with the given traffic shares."""
    tasks = ["qa", "gsm", "math", "code", "science", "chat"]
    models = ["small-7b", "mid-14b", "large-32b", "xl-70b"]
    out = []
    for i in range(count):
        task, model = tasks[i % len(tasks)], models[(i // len(tasks)) % len(models)]
        out.append(
            {
                "key": f"{task}/{i:02d}/{model}",
                "features": {"task": task, "model": model},
                "traffic": round(float(traffic[i]), 4),
                "base_tokens": int(rng.integers(300, 12000)),
                "token_cv": round(float(rng.uniform(0.3, 0.8)), 2),
                "curve": curve(rng),
            }
        )
    return out


def early_answers() -> dict[str, Any]:
    """The early-answers scenario; raises if a segment's best arm is not the one it states."""
    out = []
    for key, features, traffic, base_tokens, token_cv, best, points in EARLY_ANSWERS:
        for cost in CHECK_COSTS:
            rewards = [em - cost * base_tokens * fraction / 1000.0 for fraction, em in points]
            top = ARMS[max(range(len(ARMS)), key=rewards.__getitem__)]
            if top != best:
                raise ValueError(f"{key}: best arm at cost {cost} is {top}, not {best}")
        curve = {f"{t:g}" if t < 1.0 else "1.0": p for t, p in zip(ARMS, points, strict=True)}
        out.append(
            {
                "key": key,
                "features": features,
                "traffic": traffic,
                "base_tokens": base_tokens,
                "token_cv": token_cv,
                "curve": curve,
            }
        )
    return {
        "name": "early-answers",
        "description": "Easy segments converge early (best arm 0.5 or 0.7); one hard (held out).",
        "arms": ARMS,
        "reference_arm": 1.0,
        "segments": out,
    }


def main() -> None:
    """Write the four held-out scenarios."""
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261130)
    four: dict[str, Any] = {
        "name": "other-mix",
        "description": "Four segments with a different mix: generated knee curves (held out).",
        "arms": ARMS,
        "reference_arm": 1.0,
        "segments": segments(rng, 4, [0.4, 0.3, 0.2, 0.1]),
    }
    shares = 1.0 / np.arange(1, 31) ** 1.2
    thirty: dict[str, Any] = {
        "name": "thirty-segments",
        "description": "30 segments, Zipf traffic; the rarest gets 0.5% of it (held out).",
        "arms": ARMS,
        "reference_arm": 1.0,
        "segments": segments(rng, 30, list(shares / shares.sum())),
    }
    drifting: dict[str, Any] = {
        "name": "drift-mix",
        "description": "Five segments; at 40k two curves change and traffic shifts (held out).",
        "arms": ARMS,
        "reference_arm": 1.0,
        "segments": segments(rng, 5, [0.3, 0.25, 0.2, 0.15, 0.1]),
    }
    drifting["drift"] = [
        {"at": 40000, "segment": drifting["segments"][0]["key"], "curve": curve(rng)},
        {"at": 40000, "segment": drifting["segments"][1]["key"], "curve": curve(rng)},
        {"at": 40000, "segment": drifting["segments"][4]["key"], "traffic": 0.4},
    ]
    notes = {"early-answers": EARLY_ANSWERS_NOTE}
    for scenario in (four, thirty, drifting, early_answers()):
        path = OUT / f"{scenario['name']}.yaml"
        path.write_text(
            "# Generated by scripts/make_test_scenarios.py; do not edit by hand.\n"
            + notes.get(scenario["name"], "")
            + yaml.safe_dump(scenario, sort_keys=False, default_flow_style=None, width=100)
        )


if __name__ == "__main__":
    main()
