"""Both Vowpal Wabbit bindings serve the learner, and their models are interchangeable."""

import pytest

from stopbandit.controller.config import LearnerConfig
from stopbandit.controller.learners.outcome import OutcomeLearner
from stopbandit.controller.learners.vw import available_backend, make_regressor
from stopbandit.streams.join import Interaction

BACKENDS = ("vowpal-wabbit-next", "vowpalwabbit")
ARGS = ["--quiet", "-q", "sa"]
LINES = [
    f"{label} 1 |s seg=a task=gsm8k |a a{arm}"
    for label, arm in [(1.0, 0), (0.0, 1), (1.0, 0), (1.0, 2), (0.0, 1)] * 40
]
QUERIES = [f"|s seg=a task=gsm8k |a a{arm}" for arm in range(3)]


def test_auto_picks_an_installed_binding_and_refuses_a_missing_one() -> None:
    """`auto` resolves to a binding; an unknown one is a clear error naming the field."""
    assert available_backend("auto") in BACKENDS
    with pytest.raises(RuntimeError, match=r"learner\.backend"):
        available_backend("nonexistent")


@pytest.mark.parametrize(("writer", "reader"), [BACKENDS, BACKENDS[::-1]])
def test_a_model_written_by_one_binding_predicts_the_same_in_the_other(writer, reader) -> None:
    """Serialize with one binding, load with the other: identical predictions."""
    trained = make_regressor(ARGS, writer)
    for line in LINES:
        trained.learn_one(line)
    loaded = make_regressor(["--quiet"], reader, trained.serialize())
    for query in QUERIES:
        assert loaded.predict_one(query) == pytest.approx(trained.predict_one(query), abs=1e-6)


def test_learner_checkpoint_restores_across_bindings() -> None:
    """A learner snapshot taken on one binding restores on the other with the same estimates."""
    arms = [0.9, 0.95, 1.0]
    first = OutcomeLearner(arms, LearnerConfig(), backend="vowpal-wabbit-next")
    for i in range(300):
        arm = i % 3
        first.learn_one(
            Interaction(
                request_id=f"r{i}",
                segment="a",
                context={"task": "gsm8k"},
                threshold=arms[arm],
                probability=1 / 3,
                policy_version=1,
                em=float(i % 2),
                tokens=100 * (arm + 1),
                decision_ts=float(i),
                outcome_ts=float(i),
            ),
            [(arm, float(i % 2), 100.0 * (arm + 1), 1 / 3)],
        )
    second = OutcomeLearner(arms, LearnerConfig(), backend="vowpalwabbit")
    second.restore(first.snapshot())
    for restored, original in zip(second.prior("a"), first.prior("a"), strict=True):
        assert restored == pytest.approx(original, abs=1e-4)
    assert second.estimates("a").em == pytest.approx(first.estimates("a").em)


def test_next_binding_learns_exactly_as_its_public_api() -> None:
    """The direct learn path writes the model the public parse-and-learn calls write, byte for byte.

    Labels and weights of the learner's kind (log tokens, capped importance weights), so
    VW's own float parsing of the label is exercised too.
    """
    vw = pytest.importorskip("vowpal_wabbit_next")
    direct = make_regressor(ARGS, "vowpal-wabbit-next")
    public = vw.Workspace(ARGS)
    parser = vw.TextFormatParser(public)
    for i, line in enumerate(LINES):
        labelled = f"{(i * 0.7310585786300049) % 9.5!r} {min(1 / (0.05 + i % 7 / 7), 50.0)!r}"
        labelled += line[line.index(" 1 |") + 2 :]
        direct.learn_one(labelled)
        public.learn_one(parser.parse_line(labelled))
    assert direct.serialize() == bytes(public.serialize())
