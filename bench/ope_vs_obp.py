"""Compare controller.ope with the Open Bandit Pipeline's estimators on the same arrays.

obp (PyPI `obp` 0.5.7) cannot live in the project's environment: it declares
Python < 3.11 and pins numpy 1.23.5, pandas 1.5.2, scikit-learn 1.1.3,
scipy 1.9.3 and torch 1.12, while the project runs Python 3.11 on numpy 2.
Run it from a throwaway virtualenv instead:

    python3 -m venv /tmp/obpvenv
    /tmp/obpvenv/bin/pip install --no-deps --ignore-requires-python obp==0.5.7
    /tmp/obpvenv/bin/pip install "numpy<2" scipy scikit-learn pandas
    /tmp/obpvenv/bin/python bench/ope_vs_obp.py

obp's `utils` imports torch at module level (for its neural policies) and
`obp/__init__` imports everything; the estimators compared here never call
torch. When torch is not installed, a placeholder module stands in for it
and obp.ope.estimators is loaded without running obp's package __init__.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stopbandit.controller.ope import cross_fit, doubly_robust, fold_assignment, ips, snips


def load_obp_estimators() -> types.ModuleType:
    """Import obp.ope.estimators, standing in for torch if it is missing."""
    if importlib.util.find_spec("torch") is None:
        torch = types.ModuleType("torch")
        torch.Tensor = type("Tensor", (), {})  # type: ignore[attr-defined]
        torch.tensor = torch.Tensor  # type: ignore[attr-defined]
        sys.modules["torch"] = torch
    spec = importlib.util.find_spec("obp")
    if spec is None or spec.submodule_search_locations is None:
        raise SystemExit("obp is not installed in this interpreter; see the module docstring")
    root = Path(next(iter(spec.submodule_search_locations)))
    for name, path in (("obp", root), ("obp.ope", root / "ope")):
        package = types.ModuleType(name)
        package.__path__ = [str(path)]
        sys.modules[name] = package
    return importlib.import_module("obp.ope.estimators")


def simulate(seed: int, rows: int) -> tuple[np.ndarray, ...]:
    """The 2-segment, 4-arm Bernoulli bandit of tests/scenario/test_ope_coverage.py."""
    em_probability = np.array([[0.55, 0.70, 0.80, 0.85], [0.90, 0.85, 0.60, 0.40]])
    logging_pmf = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    rng = np.random.default_rng(seed)
    group = rng.choice(2, size=rows)
    arm = (rng.random(rows)[:, None] > logging_pmf.cumsum(axis=1)[group]).sum(axis=1)
    em = (rng.random(rows) < em_probability[group, arm]).astype(np.float64)
    return group, arm, logging_pmf[group, arm], em


def main() -> None:
    """Print ours vs obp for IPS, SNIPS and DR on a tiny log and on simulated logs."""
    estimators = load_obp_estimators()
    obp_ipw = estimators.InverseProbabilityWeighting()
    obp_snipw = estimators.SelfNormalizedInverseProbabilityWeighting()
    obp_dr = estimators.DoublyRobust()

    cases = []
    # the hand-computed DR log of tests/unit/controller/ope/test_dr.py, with its given q̂
    cases.append(
        (
            "tiny (3 rows)",
            np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]),
            np.array([0, 1, 1]),
            np.array([0.5, 0.25, 0.5]),
            np.array([1.0, 0.0, 1.0]),
            np.array([[0.8, 0.2], [0.6, 0.4], [0.5, 0.5]]),
        )
    )
    group, arm, logged, em = simulate(seed=0, rows=5_000)
    q_hat = cross_fit(em, arm, group, n_arms=4, folds=fold_assignment(em.size, 5, seed=0))
    targets = {"arm 0": (0, 0), "best per segment": (3, 0), "stochastic": None}
    for name, plays in targets.items():
        if plays is None:
            pmf = np.array([[0.1, 0.1, 0.3, 0.5], [0.6, 0.2, 0.1, 0.1]])[group]
        else:
            pmf = np.eye(4)[np.asarray(plays)[group]]
        cases.append((f"simulated 5k, {name}", pmf, arm, logged, em, q_hat))

    print(
        f"{'log':32s} {'estimator':9s} {'ours':>12s} {'obp':>12s} {'|diff|':>9s} "
        f"{'max|term diff|':>15s}  {'our 95% Wald CI':>21s}  {'obp 95% bootstrap CI':>21s}"
    )
    worst = 0.0
    for label, pmf, arms, p, y, q in cases:
        n = y.size
        target = pmf[np.arange(n), arms]
        action_dist = pmf[:, :, None]
        ours = {
            "IPS": ips(target, p, y),
            "SNIPS": snips(target, p, y),
            "DR": doubly_robust(pmf, arms, p, y, q),
        }
        common = {"reward": y, "action": arms, "pscore": p, "action_dist": action_dist}
        theirs = {
            "IPS": (obp_ipw, common),
            "SNIPS": (obp_snipw, common),
            "DR": (obp_dr, {**common, "estimated_rewards_by_reg_model": q[:, :, None]}),
        }
        our_terms = {
            "IPS": target / p * y,
            "SNIPS": target / p * y / (target / p).mean(),
            "DR": np.einsum("ik,ik->i", pmf, q) + target / p * (y - q[np.arange(n), arms]),
        }
        for key, est in ours.items():
            obp_est, kwargs = theirs[key]
            value = float(obp_est.estimate_policy_value(**kwargs))
            terms = obp_est._estimate_round_rewards(**kwargs)  # noqa: SLF001
            term_diff = float(np.max(np.abs(terms - our_terms[key])))
            interval = obp_est.estimate_interval(**kwargs, n_bootstrap_samples=2000, random_state=0)
            diff = abs(est.value - value)
            worst = max(worst, diff)
            print(
                f"{label:32s} {key:9s} {est.value:12.6f} {value:12.6f} {diff:9.2e} "
                f"{term_diff:15.2e}  [{est.ci_low:9.5f}, {est.ci_high:9.5f}]  "
                f"[{interval['95.0% CI (lower)']:9.5f}, {interval['95.0% CI (upper)']:9.5f}]"
            )
    print(f"largest |ours - obp| over all point estimates: {worst:.2e}")


if __name__ == "__main__":
    main()
