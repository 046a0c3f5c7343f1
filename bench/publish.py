"""Cost of one publish as the number of segments grows.

Every segment's estimates depend on all others (the shared curve fit), so a
publish rebuilds them all: estimates for every segment in one batched solve,
then each segment's P(best) from 4,096 fixed draws. Builds a core with N
segments of 10 tasks x 3 models, 100 random interactions each, and prints the
median time of a forced build of all policies, per segment, and as a share of
a 0.5 s publish interval (the share of the loop a publish takes there).

    .venv/bin/python bench/publish.py [--segments 100,1000,3000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from stopbandit.controller.config import StopbanditConfig
from stopbandit.controller.core import ControllerCore
from stopbandit.streams.join import Interaction

INTERACTIONS_PER_SEGMENT = 100
REPEATS = 5
INTERVAL_S = 0.5


def _core_with(segments: int) -> ControllerCore:
    core = ControllerCore(StopbanditConfig())
    arms = list(core.config.arms)
    rng = np.random.default_rng(1)
    for s in range(segments):
        context: dict[str, str | float] = {"task": f"t{s % 10}", "model": f"m{s % 3}"}
        for i in range(INTERACTIONS_PER_SEGMENT):
            arm = arms[int(rng.integers(len(arms)))]
            em = float(rng.random() < 0.5)
            tokens = int(rng.integers(100, 4000))
            core.learn(
                Interaction(f"{s}-{i}", f"seg{s}", context, arm, 1 / len(arms), 0, em, tokens, 0, 0)
            )
    return core


def main() -> None:
    """Print the build time at each size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", default="100,1000,3000")
    args = parser.parse_args()
    print(f"{'segments':>9} {'build ms':>9} {'ms/segment':>11} {'share of 0.5 s':>15}")
    for segments in (int(n) for n in args.segments.split(",")):
        core = _core_with(segments)
        times = []
        for repeat in range(REPEATS):
            started = time.perf_counter()
            core.build_policies(float(repeat), force=True)
            times.append(time.perf_counter() - started)
        build_s = statistics.median(times)
        print(
            f"{segments:>9} {build_s * 1e3:>9.1f} {build_s * 1e3 / segments:>11.3f}"
            f" {build_s / INTERVAL_S:>15.2f}"
        )


if __name__ == "__main__":
    main()
