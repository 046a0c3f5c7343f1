"""A serving node written from shared/SCHEMA.md alone, on librdkafka, closes the loop.

The node below uses none of this project's code: `confluent-kafka` to read
the policies topic and to produce events, its own fold (newest version per
key wins; holding a key, it ignores tombstones, which carry no signature), its
own HMAC check over the RFC 8785 form (the `rfc8785` package, what a Python
node would use), and its own SHA-256 draw (the rule written in
policies/sampling.py's docstring). tests/unit/policies/test_signing_node.py
checks the same signatures from Node.js.
The daemon runs in-process and learns from what it produces. Afterwards the
project's own PolicyClient, fed by the topic and by the daemon's /policies
endpoint, must hold what the foreign node holds and draw what it draws.

The node also sends counterfactual traces (revision 1.1): each outcome carries
what every lower arm returned on the same request, built from the node's
simulated truth by the contract's rules. Its first round runs entirely at its
fallback, the top arm, so the first policies it receives can only know the
lower arms from those traces.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import rfc8785
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from daemon_helpers import HMAC_KEY, base_settings, config_of

from stopbandit.controller.daemon.http import HttpServer
from stopbandit.controller.daemon.loop import Daemon
from stopbandit.policies.client import PolicyClient
from stopbandit.policies.sources import HttpPoller, TopicFollower

if TYPE_CHECKING:
    from brokers import Broker, Topics

pytestmark = pytest.mark.integration

SEGMENTS = {"chat/easy/m1": 2000.0, "chat/long/m2": 8000.0}  # segment -> tokens at threshold 1.0
# The node's own configuration, as its fallback threshold is: the arms it knows before
# any policy arrives (the default scenario's, which the daemon runs with).
NODE_ARMS = [0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0]
FALLBACK_THRESHOLD = NODE_ARMS[-1]
ROUND = 500
MAX_ROUNDS = 16


def compact(document: dict[str, Any]) -> bytes:
    """An event as the node produces it: compact JSON."""
    return json.dumps(document, separators=(",", ":")).encode()


def signed_by(document: dict[str, Any], key: bytes) -> bool:
    """HMAC-SHA256 over the RFC 8785 form without `signature`, as SCHEMA.md 1.1 says."""
    body = {k: v for k, v in document.items() if k != "signature"}
    expected = "hmac-sha256:" + hmac.new(key, rfc8785.dumps(body), hashlib.sha256).hexdigest()
    return hmac.compare_digest(str(document.get("signature")).encode(), expected.encode())


def draw(pmf: list[float], request_id: str) -> int:
    """The arm for `request_id`: u = SHA-256 prefix / 2**64, first cumulative sum above u."""
    u = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") / 2.0**64
    cumulative, last = 0.0, 0
    for index, p in enumerate(pmf):
        if p <= 0:
            continue
        cumulative += p
        last = index
        if u < cumulative:
            return index
    return last


class ForeignNode:
    """A librdkafka serving node: folds signed policies, draws, produces events."""

    def __init__(self, bootstrap_servers: str, topics: Topics) -> None:
        self.topics = topics
        self.policies: dict[str, dict[str, Any]] = {}
        self.rejected = 0
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": "unused-manual-assignment",
                "enable.auto.commit": False,
            }
        )
        self.consumer.assign([TopicPartition(topics.policies, 0, OFFSET_BEGINNING)])
        self.producer = Producer({"bootstrap.servers": bootstrap_servers, "linger.ms": 10})

    def read_policies(self) -> None:
        """Fold whatever the policies topic has for us now."""
        while (message := self.consumer.poll(0.2)) is not None:
            if message.error():
                continue
            key = message.key().decode()
            if message.value() is None:
                self.rejected += 1  # unsigned: a node with a key keeps the policy
                continue
            document = json.loads(message.value())
            if not signed_by(document, HMAC_KEY.encode()):
                self.rejected += 1
                continue
            held = self.policies.get(key)
            if held is None or document["version"] > held["version"]:
                self.policies[key] = document

    def request(self, index: int, segment: str, base_tokens: float) -> dict[str, Any]:
        """Serve one request: choose a threshold, produce its decision and outcome."""
        request_id = f"node-{index:06d}"
        policy = self.policies.get(segment) or self.policies.get("*")
        if policy is None:
            arms, threshold, probability, version = NODE_ARMS, FALLBACK_THRESHOLD, 1.0, 0
        else:
            k = draw(policy["pmf"], request_id)
            arms, threshold, probability = policy["arms"], policy["arms"][k], policy["pmf"][k]
            version = policy["version"]
        decision = {
            "type": "decision", "v": 1, "request_id": request_id, "ts": 1_700_000_000.0 + index,
            "segment": segment, "context": {"task": segment.split("/")[1]},
            "threshold": threshold, "probability": probability, "policy_version": version,
        }  # fmt: skip
        em, tokens = truth(index, arms, threshold, base_tokens)
        outcome = {
            "type": "outcome", "v": 1, "request_id": request_id, "ts": 1_700_000_000.5 + index,
            "segment": segment, "em": em, "tokens": tokens,
        }  # fmt: skip
        # The contract's rules: every arm of the policy strictly below the played one,
        # ascending, each the result at that arm on this run (here, the simulated truth);
        # integer tokens that do not decrease with the arm, none above the outcome's.
        lower = [arm for arm in arms if arm < threshold]
        if lower:
            outcome["counterfactual"] = [
                [arm, *truth(index, arms, arm, base_tokens)] for arm in lower
            ]
        for event in (decision, outcome):
            self.producer.produce(self.topics.events, key=segment.encode(), value=compact(event))
        self.producer.poll(0)
        return decision

    def close(self) -> None:
        """Flush and close both clients."""
        self.producer.flush(30)
        self.consumer.close()


def truth(index: int, arms: list[float], arm: float, base_tokens: float) -> tuple[float, int]:
    """The simulated request's (em, tokens) at `arm`: one request, every arm on the same run.

    Tokens rise with the arm; every arm answers correctly but the lowest, which
    misses one request in three.
    """
    em = 0.0 if arm == arms[0] and index % 3 == 0 else 1.0
    return em, int(base_tokens * arm)


def wait_for_policies(node: ForeignNode, segments: list[str], timeout_s: float) -> None:
    """Read the policies topic until the node holds a policy for each of `segments`."""
    deadline_s = time.monotonic() + timeout_s
    while not all(s in node.policies for s in segments):
        assert time.monotonic() < deadline_s, f"no policy for {segments} within {timeout_s} s"
        node.read_policies()


def dropped_traces(daemon: Daemon) -> dict[str, float]:
    """The daemon's counterfactual traces dropped, by reason (empty when none ever was)."""
    return {
        sample.labels["reason"]: sample.value
        for family in daemon.metrics.registry.collect()
        if family.name == "stopbandit_counterfactual_dropped"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def serve_rounds(node: ForeignNode, decisions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Serve rounds of requests until every segment's greedy arm is below 1.0 (two at least).

    Returns:
        The first policy the node held for each segment after its first round.
    """
    first_policies: dict[str, dict[str, Any]] = {}
    for round_index in range(MAX_ROUNDS):
        node.read_policies()
        for i in range(ROUND):
            index = round_index * ROUND + i
            segment = list(SEGMENTS)[index % 2]
            decisions.append(node.request(index, segment, SEGMENTS[segment]))
        node.producer.flush(30)
        if round_index == 0:
            # Everything so far ran at the fallback: what the daemon knows of the
            # lower arms, it knows from the traces alone.
            wait_for_policies(node, list(SEGMENTS), timeout_s=60)
            first_policies = {s: node.policies[s] for s in SEGMENTS}
        greedy = {s: node.policies.get(s, {}).get("greedy", 1.0) for s in SEGMENTS}
        # The traces alone may move greedy after the first round: at least one round
        # is drawn from the policies.
        if round_index > 0 and all(g < 1.0 for g in greedy.values()):
            break
        time.sleep(0.5)  # let a publish round happen before the next batch
    return first_policies


def assert_traces_taught_the_lower_arms(
    decisions: list[dict[str, Any]], first_policies: dict[str, dict[str, Any]]
) -> None:
    """The first round played only the fallback, yet its policies count every lower arm."""
    assert {d["threshold"] for d in decisions[:ROUND]} == {FALLBACK_THRESHOLD}
    assert first_policies.keys() == SEGMENTS.keys()
    for segment, policy in first_policies.items():
        n = dict(zip(policy["arms"], policy["estimates"]["n"], strict=True))
        lower = {arm: count for arm, count in n.items() if arm < FALLBACK_THRESHOLD}
        assert lower, policy
        assert all(count > 0 for count in lower.values()), (segment, n)


def assert_same_draws(node: ForeignNode, client: PolicyClient) -> None:
    """The project's client draws what the foreign node draws, fallback included."""
    for segment in [*SEGMENTS, "unknown/segment"]:
        for i in range(200):
            request_id = f"check-{i}"
            policy = node.policies.get(segment) or node.policies["*"]
            k = draw(policy["pmf"], request_id)
            choice = client.choose(request_id, segment)
            assert (choice.threshold, choice.probability) == (policy["arms"][k], policy["pmf"][k])
            assert choice.policy_version == policy["version"]


def test_a_librdkafka_node_from_the_schema_alone_closes_the_loop(
    broker: Broker, topics: Topics, tmp_path
):
    """The daemon learns the node's events and traces; both clients then hold and draw the same."""
    settings = base_settings(broker, topics, tmp_path, publish={"interval_s": 0.2})
    daemon = Daemon(config_of(settings))
    server = HttpServer(daemon, "127.0.0.1", 0)
    server.start()
    loop = threading.Thread(target=daemon.run, name="daemon")
    loop.start()
    node = ForeignNode(broker.bootstrap_servers, topics)
    decisions: list[dict[str, Any]] = []
    sample = daemon.metrics.registry.get_sample_value
    try:
        try:
            first_policies = serve_rounds(node, decisions)
            deadline_s = time.monotonic() + 60
            while sample("stopbandit_interactions_learned_total") < len(decisions):
                assert time.monotonic() < deadline_s, "the daemon did not learn every interaction"
                time.sleep(0.2)
            over_http = PolicyClient(fallback_threshold=1.0, hmac_key=HMAC_KEY.encode())
            url = f"http://127.0.0.1:{server.port}/policies"
            assert HttpPoller(over_http, url).poll_once() > 0
        finally:
            daemon.stop()
            loop.join(60)
            server.stop()
        node.read_policies()  # everything, including the daemon's final round
        client = PolicyClient(fallback_threshold=1.0, hmac_key=HMAC_KEY.encode())
        with TopicFollower(client, broker.bootstrap_servers, topics.policies) as follower:
            assert follower.wait_caught_up(timeout_s=30.0)
    finally:
        node.close()

    versions = {s: p["version"] for s, p in node.policies.items()}
    assert sample("stopbandit_interactions_learned_total") == len(decisions)
    assert_traces_taught_the_lower_arms(decisions, first_policies)
    assert dropped_traces(daemon) == {}
    assert node.rejected == 0
    assert all(node.policies[s]["greedy"] < 1.0 for s in SEGMENTS), node.policies
    assert any(d["policy_version"] > 0 and d["probability"] < 1.0 for d in decisions)
    assert {s: p.version for s, p in client.policies.items()} == versions
    assert_same_draws(node, client)
    assert all(over_http.version(s) >= 1 for s in SEGMENTS)
    assert not over_http.rejected  # /policies serves the policies signed, as the topic does
