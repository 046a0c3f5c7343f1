"""The simulator's events, built without validation, are what validation makes of them."""

from __future__ import annotations

import pytest

from stopbandit.controller.commands.simulate import simulation_config
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.sim.built import built
from stopbandit.controller.sim.scenario import DEFAULT_SCENARIO, load_scenario
from stopbandit.controller.sim.simulate import ControllerAgent, Simulation
from stopbandit.streams.codec import encode
from stopbandit.streams.events import Decision, Outcome


class _Recording(ControllerAgent):
    """The controller agent, keeping every event it is offered."""

    def __init__(self, core: ControllerCore) -> None:
        super().__init__(core)
        self.events: list[Decision | Outcome] = []

    def observe(self, decision: Decision, outcome: Outcome, now: float) -> None:
        self.events += [decision, outcome]
        super().observe(decision, outcome, now)


@pytest.mark.parametrize("traced", [False, True])
def test_simulated_events_equal_their_validated_selves(traced: bool) -> None:
    """Every field in its wire type and within the contract: validation changes nothing.

    Runs past two publishes, so decisions carry pmfs, explored arms and (traced)
    counterfactual entries below the played arm.
    """
    scenario = load_scenario(DEFAULT_SCENARIO)
    if traced:
        scenario = scenario.with_trace(1.0, 0.8)
    config = simulation_config(scenario, None)
    agent = _Recording(ControllerCore(config))
    Simulation(scenario, agent, seed=2, weights=config.reward, fallback_arm=config.default_arm).run(
        2_500
    )
    assert any(isinstance(e, Decision) and e.pmf for e in agent.events)
    if traced:
        assert any(isinstance(e, Outcome) and e.counterfactual for e in agent.events)
    for event in agent.events:
        validated = type(event).model_validate(event.model_dump())
        assert validated == event
        assert encode(validated) == encode(event)
        if isinstance(event, Outcome):
            assert validated.counterfactual_dropped is None


@pytest.mark.parametrize(
    ("model", "values"),
    [
        (Outcome, {"v": 1, "request_id": "r", "ts": 1.5, "segment": "a", "em": 1.0, "tokens": 5}),
        (
            Outcome,
            {
                "v": 1,
                "request_id": "r",
                "ts": 1.5,
                "segment": "a",
                "em": 0.0,
                "tokens": 9,
                "counterfactual": ((0.5, 1.0, 3),),
            },
        ),
        # No context: its default factory gives each event a dict of its own.
        (
            Decision,
            {
                "v": 1,
                "request_id": "r",
                "ts": 2.0,
                "segment": "a",
                "threshold": 0.9,
                "probability": 0.5,
                "policy_version": 3,
                "pmf": [(0.9, 0.5), (1.0, 0.5)],
            },
        ),
    ],
)
def test_built_is_model_construct(model: type[Decision | Outcome], values: dict) -> None:
    """Same fields in the same order, same fields set, same JSON; defaults not shared."""
    mine, theirs = built(model, **values), model.model_construct(**values)
    assert mine == theirs
    assert list(mine.__dict__) == list(theirs.__dict__)
    assert mine.model_fields_set == theirs.model_fields_set
    assert encode(mine) == encode(theirs)
    if model is Decision:
        assert built(model, **values).context is not mine.context


def test_built_refuses_missing_and_unknown_fields() -> None:
    """A missing required field or a misspelt one is a TypeError naming it."""
    with pytest.raises(TypeError, match="tokens"):
        built(Outcome, v=1, request_id="r", ts=1.0, segment="a", em=1.0)
    with pytest.raises(TypeError, match="tokenz"):
        built(Outcome, v=1, request_id="r", ts=1.0, segment="a", em=1.0, tokens=1, tokenz=2)
