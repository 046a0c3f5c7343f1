"""The fleet reproduces the simulator's requests through PolicyClient.choose."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stopbandit.controller.commands.simulate import simulation_config
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.sim.fleet import Fleet
from stopbandit.controller.sim.scenario import DEFAULT_SCENARIO, load_scenario
from stopbandit.controller.sim.simulate import ControllerAgent, Simulation
from stopbandit.policies.client import PolicyClient
from stopbandit.policies.emitter import EmitterStats

if TYPE_CHECKING:
    from stopbandit.streams.events import Event


class ListEmitter:
    """Collects events in memory, standing in for EventEmitter."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.stats = EmitterStats()

    def emit(self, event: Event) -> bool:
        """Keep the event."""
        self.events.append(event)
        return True

    def flush(self, timeout_s: float = 30.0) -> bool:  # noqa: ARG002 - the real signature
        """Nothing to wait for."""
        return True


class LogWriter:
    """Collects the simulator's events in memory, standing in for an event log file."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def write(self, event: Event) -> None:
        """Keep the event."""
        self.events.append(event)


def test_paced_fleet_emits_the_simulators_events_and_reaches_its_policies():
    """With a controller publishing at the same points, events and greedy arms are identical."""
    scenario = load_scenario(DEFAULT_SCENARIO)
    config = simulation_config(scenario, None)
    n, every = 3500, 500

    log = LogWriter()
    agent = ControllerAgent(ControllerCore(config))
    report = Simulation(
        scenario,
        agent,
        seed=7,
        weights=config.reward,
        fallback_arm=config.default_arm,
        publish_every=every,
        log=log,  # type: ignore[arg-type]
    ).run(n)

    core = ControllerCore(config)
    clients = [PolicyClient(fallback_threshold=config.default_arm) for _ in range(2)]
    emitter = ListEmitter()
    fed = 0

    def publish(interactions: int) -> None:
        nonlocal fed
        for event in emitter.events[fed:]:
            core.offer(event, event.ts)
        fed = len(emitter.events)
        assert core.learner.learned == interactions
        for policy in core.build_policies(emitter.events[-1].ts):
            for client in clients:
                client.apply(policy)

    fleet = Fleet(
        scenario,
        clients,
        emitter,  # type: ignore[arg-type]
        seed=7,
        weights=config.reward,
        fallback_threshold=config.default_arm,
        publish_every=every,
        on_publish_point=publish,
    )
    assert fleet.run(n) == n
    assert emitter.events == log.events
    fleet_report = fleet.report()
    assert fleet_report["final_policy"]["arms"] == report["final_policy"]["arms"]
    assert fleet_report["final_policy"] == report["final_policy"]
    assert abs(fleet_report["online"]["em"] - report["online"]["em"]) < 1e-9
    assert abs(fleet_report["online"]["tokens"] - report["online"]["tokens"]) < 1e-6
    assert len(fleet.progress().history) == n // every


def test_stop_ends_the_run_early():
    """A stop request ends the run at the next request."""
    scenario = load_scenario(DEFAULT_SCENARIO)
    config = simulation_config(scenario, None)
    fleet: Fleet

    def stop_at_first_point(_interactions: int) -> None:
        fleet.stop()

    fleet = Fleet(
        scenario,
        [PolicyClient(fallback_threshold=1.0)],
        ListEmitter(),  # type: ignore[arg-type]
        seed=1,
        weights=config.reward,
        fallback_threshold=1.0,
        publish_every=100,
        on_publish_point=stop_at_first_point,
    )
    assert fleet.run(1000) == 100
    assert fleet.progress().interactions == 100
