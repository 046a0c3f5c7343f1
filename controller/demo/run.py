"""The one-command demo: a broker, the controller daemon and a simulated fleet, together.

Without a broker address the demo starts `EmbeddedTansu` on a free loopback
port. It creates its own topics (unique names, one events partition so the
controller sees the events in the order they were made), runs the real
`Daemon` loop in a thread, and a `Fleet` of serving nodes (each a
`PolicyClient` following the policies topic, with signatures checked) that
share one `EventEmitter`.

Pacing. For the demo to show the same run as `stopbandit simulate` with
the same seed, the daemon publishes only at the fleet's publish points
(`controller.demo.pacing`), and the fleet waits there until every node
holds the new policies.

Stopping. `stop()` (from SIGINT/SIGTERM in the CLI) stops the fleet at its
next request and every wait within a fraction of a second; `run` then
releases the pacing, stops the daemon (final publish and checkpoint), closes
the clients and stops the broker it started, in that order, whatever ended
the run.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from stopbandit.controller.commands.simulate import simulation_config
from stopbandit.controller.config import load_config
from stopbandit.controller.demo.pacing import PacedDaemon, PublishPacer
from stopbandit.controller.sim.fleet import Fleet, FleetError, Progress
from stopbandit.controller.sim.scenario import Scenario, load_scenario
from stopbandit.policies.client import PolicyClient
from stopbandit.policies.emitter import EventEmitter
from stopbandit.policies.sources import TopicFollower
from stopbandit.streams.embedded import EmbeddedTansu
from stopbandit.streams.kafka import TopicSpec, ensure_topics

if TYPE_CHECKING:
    from collections.abc import Callable

    from stopbandit.controller.config import StopbanditConfig
    from stopbandit.controller.daemon.loop import Daemon

log = structlog.get_logger(__name__)

WAIT_SLICE_S = 0.2
PUBLISH_POINT_TIMEOUT_S = 120.0
FOLLOWER_START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class DemoSettings:
    """What `stopbandit demo` was asked to do.

    Attributes:
        scenario_path: the scenario YAML.
        interactions: requests the fleet makes.
        seed: the random seed (as `stopbandit simulate --seed`).
        publish_every: requests between publish rounds (as `simulate --publish-every`).
        bootstrap_servers: an existing broker, or None to start an embedded Tansu.
        nodes: simulated serving nodes, each following the policies topic.
        trace_share: share of requests sending counterfactual traces (None: the scenario's).
        coupling: how alike a request's outcomes at different arms are (None: the scenario's).
        target: target mode's target (`{"token_reduction": 0.45}`), None for fixed weights.
    """

    scenario_path: Path
    interactions: int
    seed: int
    publish_every: int = 1000
    bootstrap_servers: str | None = None
    nodes: int = 2
    trace_share: float | None = None
    coupling: float | None = None
    target: dict[str, float] | None = None

    def scenario(self) -> Scenario:
        """The scenario file, with the trace settings asked for."""
        return load_scenario(self.scenario_path).with_trace(self.trace_share, self.coupling)


def demo_config(settings: DemoSettings, bootstrap_servers: str, workdir: Path) -> StopbanditConfig:
    """The daemon's config: the simulator's learning settings, the demo's own topics."""
    scenario = settings.scenario()
    learning = simulation_config(scenario, None)
    suffix = uuid.uuid4().hex[:10]
    stats_topic = f"stopbandit.demo.{suffix}.stats"
    return load_config(
        None,
        knob=learning.knob,
        arms=learning.arms,
        reference_arm=learning.reference_arm,
        default_arm=learning.default_arm,
        reward=learning.reward.model_dump(),
        kafka={
            "bootstrap_servers": [bootstrap_servers],
            "events_topic": f"stopbandit.demo.{suffix}.events",
            "policies_topic": f"stopbandit.demo.{suffix}.policies",
            "dlq_topic": f"stopbandit.demo.{suffix}.dlq",
            "group_id": f"stopbandit-demo-{suffix}",
            "create_topics": True,
            # One partition: the controller learns the events in the order the fleet made them.
            "partitions": 1,
            # Tansu answers a group join after half the session timeout.
            "session_timeout_ms": 2000,
            # The embedded broker is one: its topics have one copy, as asked, not as warned.
            **({"replication_factor": 1} if settings.bootstrap_servers is None else {}),
        },
        publish={"interval_s": 0.1, "hmac_key": secrets.token_hex(16)},
        checkpoint={"store": "dir", "dir": str(workdir / "checkpoints"), "interval_s": 30.0},
        log={"format": "console", "level": "warning"},
        # Target mode steps λ at every publish round: the demo's rounds are its publish points.
        **(
            {"target": {**settings.target, "interval_s": 1e-3, "stats_topic": stats_topic}}
            if settings.target
            else {}
        ),
    )


class Demo:
    """One demo run; `run` blocks until it ends, `stop` ends it early from any thread."""

    def __init__(self, settings: DemoSettings) -> None:
        self.settings = settings
        self.scenario = settings.scenario()
        self._stop = threading.Event()
        self.fleet: Fleet | None = None
        self.daemon: PacedDaemon | None = None
        self.started_s = time.monotonic()

    def stop(self) -> None:
        """End the run early (safe from a signal handler: it only sets flags)."""
        self._stop.set()
        if self.fleet is not None:
            self.fleet.stop()

    @property
    def stopped_early(self) -> bool:
        """Whether `stop` was called."""
        return self._stop.is_set()

    def progress(self) -> Progress | None:
        """The fleet's figures so far (None before it starts)."""
        return self.fleet.progress() if self.fleet is not None else None

    def run(
        self, on_tick: Callable[[], None] = lambda: None, tick_s: float = 0.25
    ) -> dict[str, Any]:
        """Start everything, run the fleet to the end (or to `stop`), stop everything.

        Args:
            on_tick: called every `tick_s` while the fleet runs (the live display).
            tick_s: seconds between ticks.

        Returns:
            The fleet's report plus the demo's own fields.

        Raises:
            FleetError: the daemon did not publish, or nodes did not receive a round, in time.
        """
        broker = None
        bootstrap = self.settings.bootstrap_servers
        with tempfile.TemporaryDirectory(prefix="stopbandit-demo-") as workdir:
            try:
                if bootstrap is None:
                    broker = EmbeddedTansu().start()
                    bootstrap = broker.bootstrap_servers
                config = demo_config(self.settings, bootstrap, Path(workdir))
                report = self._run_with(config, on_tick, tick_s)
            finally:
                if broker is not None:
                    broker.stop()
        report["bootstrap_servers"] = (
            "embedded tansu" if self.settings.bootstrap_servers is None else bootstrap
        )
        return report

    def _run_with(
        self, config: StopbanditConfig, on_tick: Callable[[], None], tick_s: float
    ) -> dict[str, Any]:
        kafka = config.kafka
        ensure_topics(
            kafka,
            [
                TopicSpec(kafka.events_topic, 1),
                TopicSpec(kafka.policies_topic, 1, compact=True),
                TopicSpec(kafka.dlq_topic, 1),
            ],
        )
        assert config.publish.hmac_key is not None  # noqa: S101 - demo_config sets it
        key = config.publish.hmac_key.get_secret_value().encode()
        bootstrap = list(kafka.bootstrap_servers)
        pacer = PublishPacer()
        self.daemon = PacedDaemon(config, pacer)
        daemon_errors: list[BaseException] = []
        daemon_thread = threading.Thread(
            target=_run_daemon, args=(self.daemon, daemon_errors), name="demo-daemon"
        )
        nodes = [
            PolicyClient(fallback_threshold=config.default_arm, hmac_key=key)
            for _ in range(self.settings.nodes)
        ]
        followers = [TopicFollower(node, bootstrap, kafka.policies_topic) for node in nodes]
        emitter = EventEmitter(bootstrap, kafka.events_topic, client_id="stopbandit-demo-fleet")
        fleet = Fleet(
            self.scenario,
            nodes,
            emitter,
            seed=self.settings.seed,
            weights=config.reward,
            fallback_threshold=config.default_arm,
            publish_every=self.settings.publish_every,
            on_publish_point=lambda n: self._publish_point(pacer, nodes, daemon_thread, n),
        )
        self.fleet = fleet
        if self._stop.is_set():
            fleet.stop()
        fleet_errors: list[BaseException] = []
        fleet_thread = threading.Thread(
            target=_run_fleet,
            args=(fleet, self.settings.interactions, fleet_errors),
            name="demo-fleet",
        )
        try:
            daemon_thread.start()
            for follower in followers:
                follower.start()
            for follower in followers:
                self._wait(partial(follower.wait_caught_up, WAIT_SLICE_S), FOLLOWER_START_TIMEOUT_S)
            self.started_s = time.monotonic()
            fleet_thread.start()
            while fleet_thread.is_alive():
                on_tick()
                fleet_thread.join(tick_s)
            on_tick()
            # What the nodes hold now is the run's result, before the daemon's final round.
            report = fleet.report()
            report["target"] = self.daemon.target_report()
            rounds = pacer.rounds
        finally:
            fleet.stop()
            if fleet_thread.is_alive():
                fleet_thread.join()
            pacer.release()
            self.daemon.stop()
            if daemon_thread.is_alive():
                daemon_thread.join()
            for follower in followers:
                follower.close()
            emitter.close(timeout_s=10.0)
        if fleet_errors:
            raise fleet_errors[0]
        if daemon_errors:
            raise FleetError(f"the daemon failed: {daemon_errors[0]!r}", report["interactions"])
        report.update(
            publish_every=self.settings.publish_every,
            nodes=self.settings.nodes,
            stopped_early=self.stopped_early,
            elapsed_s=time.monotonic() - self.started_s,
            daemon_events=self.daemon.events_processed,
            publish_rounds=rounds,
        )
        return report

    def _publish_point(
        self,
        pacer: PublishPacer,
        nodes: list[PolicyClient],
        daemon_thread: threading.Thread,
        interactions: int,
    ) -> None:
        rounds = pacer.request(2 * interactions)
        versions: dict[str, int] | None = None

        def published() -> bool:
            nonlocal versions
            if not daemon_thread.is_alive():
                raise FleetError("the daemon stopped", interactions)
            versions = pacer.wait(rounds, WAIT_SLICE_S)
            return versions is not None

        if not self._wait(published, PUBLISH_POINT_TIMEOUT_S):
            if self._stop.is_set():
                return
            raise FleetError("the daemon did not publish in time", interactions)
        assert versions is not None  # noqa: S101 - set when published() is true
        for node in nodes:
            covered = self._wait(
                partial(node.wait_covers, versions, WAIT_SLICE_S), PUBLISH_POINT_TIMEOUT_S
            )
            if not covered and not self._stop.is_set():
                raise FleetError("a node did not receive the published policies", interactions)

    def _wait(self, attempt: Callable[[], bool], timeout_s: float) -> bool:
        """Repeat a short blocking `attempt` until it succeeds, the demo stops, or time is up."""
        deadline_s = time.monotonic() + timeout_s
        while not self._stop.is_set():
            if attempt():
                return True
            if time.monotonic() > deadline_s:
                return False
        return False


def _run_daemon(daemon: Daemon, errors: list[BaseException]) -> None:
    try:
        daemon.run()
    except Exception as error:
        # Logged here with its traceback; the main thread raises it after stopping everything.
        log.exception("demo.daemon_failed")
        errors.append(error)


def _run_fleet(fleet: Fleet, interactions: int, errors: list[BaseException]) -> None:
    try:
        fleet.run(interactions)
    except Exception as error:  # noqa: BLE001 - handed to the main thread
        errors.append(error)
