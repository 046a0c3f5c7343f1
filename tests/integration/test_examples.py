"""examples/openai_budget_node.py end to end: broker, policies, a stand-in engine, events.

No real inference engine runs here. The engine is a small OpenAI-compatible
stand-in server written for this test: it reads the budget from the request
body the way vLLM (`thinking_token_budget`) or SGLang
(`custom_params.thinking_budget`) would, "reasons" min(budget, 1500) tokens,
answers correctly only when it reasoned at least 1000, and reports usage as
the OpenAI API does. What is real: the broker (Apache Kafka and Tansu), the
signed policies on the policies topic, the example's PolicyClient,
TopicFollower and EventEmitter, and the events read back from the topic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, ClassVar

import pytest
from brokers import read_to_end
from example_scripts import EXAMPLES, load_example
from kafka import KafkaProducer

from stopbandit.policies.client import PolicyClient
from stopbandit.policies.emitter import EventEmitter
from stopbandit.policies.signing import sign
from stopbandit.policies.sources import TopicFollower
from stopbandit.streams.codec import decode
from stopbandit.streams.events import Decision, Outcome, Policy

if TYPE_CHECKING:
    from collections.abc import Iterator

    from brokers import Broker, Topics

pytestmark = pytest.mark.integration

KEY = b"example-signing-key"
SEGMENT = "math/gsm8k/qwen3-8b"
BUDGETS = [512, 1024, 2048, 4096]
NATURAL_REASONING = 1500  # the stand-in's reasoning length when no budget stops it
NEEDED_REASONING = 1000  # below this the stand-in's answer is wrong
ANSWER_TOKENS = 12


class StandInEngine(BaseHTTPRequestHandler):
    """POST /v1/chat/completions, as an OpenAI-compatible reasoning engine answers it."""

    bodies: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        """Answer one chat completion at the budget the body asks for."""
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        budget = body.get("thinking_token_budget") or body["custom_params"]["thinking_budget"]
        reasoning = min(budget, NATURAL_REASONING)
        answer = "The answer is 42." if reasoning >= NEEDED_REASONING else "The answer is 41."
        tokens = reasoning + ANSWER_TOKENS
        assert body["max_tokens"] >= tokens
        payload = json.dumps(
            {
                "id": "chatcmpl-standin",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": 20,
                    "completion_tokens": tokens,
                    "total_tokens": 20 + tokens,
                    "completion_tokens_details": {"reasoning_tokens": reasoning},
                },
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        """Quiet: the test reads the recorded bodies instead."""


@pytest.fixture
def engine_url() -> Iterator[str]:
    """The stand-in engine on a free loopback port, its recorded bodies cleared."""
    StandInEngine.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandInEngine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def publish_budget(producer: KafkaProducer, topic: str, version: int, budget: int) -> None:
    """A signed token-budget policy for SEGMENT, all its mass on `budget`."""
    pmf = [1.0 if arm == budget else 0.0 for arm in BUDGETS]
    policy = Policy(
        segment=SEGMENT,
        version=version,
        issued_at=time.time(),
        knob="token_budget",
        arms=[float(arm) for arm in BUDGETS],
        pmf=pmf,
        greedy=float(budget),
    )
    value = sign(policy, KEY).model_dump_json(exclude_none=True).encode()
    producer.send(topic, key=SEGMENT.encode(), value=value)
    producer.flush()


def events_by_request(broker: Broker, topic: str) -> dict[str, dict[str, Decision | Outcome]]:
    """The events topic read back: per request id, its decision and outcome."""
    found: dict[str, dict[str, Decision | Outcome]] = {}
    for record in read_to_end(broker.bootstrap_servers, topic):
        event = decode(record.key, record.value)
        assert isinstance(event, Decision | Outcome)
        assert event.type not in found.setdefault(event.request_id, {}), "logged twice"
        found[event.request_id][event.type] = event
    return found


def test_budget_node_follows_policies_and_logs_both_events(
    broker: Broker, topics: Topics, engine_url: str, request: pytest.FixtureRequest
):
    """Budgets come from the policies topic and change with it; every request logs a pair."""
    example = load_example("openai_budget_node")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    request.addfinalizer(producer.close)
    client = PolicyClient(fallback_threshold=4096.0, hmac_key=KEY)
    publish_budget(producer, topics.policies, version=1, budget=1024)
    served: list[tuple[int, Any]] = []
    with (
        TopicFollower(client, broker.bootstrap_servers, topics.policies) as follower,
        EventEmitter(broker.bootstrap_servers, topics.events) as emitter,
    ):
        assert follower.wait_caught_up(timeout_s=30.0)
        node = example.BudgetNode(
            client, emitter.emit, engine_url=engine_url, model="qwen3-8b", answer_tokens=64
        )
        messages = [{"role": "user", "content": "What is 6 * 7?"}]
        served.extend((1, node.serve(f"v1-{i}", SEGMENT, messages)) for i in range(5))
        publish_budget(producer, topics.policies, version=2, budget=2048)
        assert client.wait_for(2, timeout_s=30.0)
        served.extend((2, node.serve(f"v2-{i}", SEGMENT, messages)) for i in range(5))
        # The grades arrive after the answers, as an answer checker's would.
        for _, answer in served:
            node.grade(answer.request_id, example.math_em(answer.answer, "42"))
        assert node.pending == {}
        assert emitter.flush(timeout_s=30.0)
        assert (emitter.stats.sent, emitter.stats.dropped, emitter.stats.failed) == (20, 0, 0)

    sent_budgets = [body["thinking_token_budget"] for body in StandInEngine.bodies]
    assert sent_budgets == [1024] * 5 + [2048] * 5
    assert all(body["max_tokens"] == budget + 64 for body, budget in zip(
        StandInEngine.bodies, sent_budgets, strict=True
    ))  # fmt: skip
    events = events_by_request(broker, topics.events)
    assert set(events) == {answer.request_id for _, answer in served}
    for version, answer in served:
        decision, outcome = (
            events[answer.request_id]["decision"],
            events[answer.request_id]["outcome"],
        )
        assert isinstance(decision, Decision)
        assert isinstance(outcome, Outcome)
        budget = 1024 if version == 1 else 2048
        assert (decision.threshold, decision.probability, decision.policy_version) == (
            budget,
            1.0,
            version,
        )
        assert decision.segment == outcome.segment == SEGMENT
        assert outcome.tokens == min(budget, NATURAL_REASONING) + ANSWER_TOKENS
        # 1024 stops the reasoning (stopped early) at a right answer; 2048 lets it end.
        assert outcome.stopped_early is (budget < NATURAL_REASONING)
        assert outcome.em == 1.0
        assert outcome.ts >= decision.ts


def test_sglang_gets_the_budget_in_custom_params(engine_url: str):
    """For SGLang the same budget travels as custom_params.thinking_budget."""
    example = load_example("openai_budget_node")
    emitted: list[object] = []
    client = PolicyClient(fallback_threshold=512.0, hmac_key=KEY)
    node = example.BudgetNode(client, emitted.append, engine_url=engine_url, engine="sglang")
    answer = node.serve("s-1", SEGMENT, [{"role": "user", "content": "6 * 7?"}])
    (body,) = StandInEngine.bodies
    assert body["custom_params"] == {"thinking_budget": 512}
    assert "thinking_token_budget" not in body
    assert example.math_em(answer.answer, "42") == 0.0  # 512 tokens were too few
    outcome = node.grade("s-1", 0.0)
    assert [type(e).__name__ for e in emitted] == ["Decision", "Outcome"]
    assert outcome.stopped_early is True
    assert node.grade("s-1", 1.0) is None  # graded once


def test_a_confidence_policy_is_not_read_as_a_budget(engine_url: str):
    """A threshold policy reaching a budget node: the fallback budget, logged as version 0."""
    example = load_example("openai_budget_node")
    client = PolicyClient(fallback_threshold=4096.0)
    client.apply(
        Policy(
            segment=SEGMENT, version=3, issued_at=0.0, arms=[0.9, 1.0], pmf=[1.0, 0.0], greedy=0.9
        )
    )
    emitted: list[Decision | Outcome] = []
    node = example.BudgetNode(client, emitted.append, engine_url=engine_url, fallback_budget=4096)
    node.serve("c-1", SEGMENT, [{"role": "user", "content": "6 * 7?"}])
    assert StandInEngine.bodies[0]["thinking_token_budget"] == 4096
    (decision,) = emitted
    assert isinstance(decision, Decision)
    assert (decision.threshold, decision.policy_version) == (4096.0, 0)


def test_the_script_serves_stdin_requests(broker: Broker, topics: Topics, engine_url: str):
    """`python examples/openai_budget_node.py` as documented: stdin in, events on the topic."""
    requests = "".join(
        json.dumps(
            {"request_id": f"cli-{i}", "segment": SEGMENT, "prompt": "6 * 7?", "answer": "42"}
        )
        + "\n"
        for i in range(3)
    )
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "openai_budget_node.py"),
            "--engine-url",
            engine_url,
            "--model",
            "qwen3-8b",
            "--bootstrap",
            broker.bootstrap_servers,
            "--events-topic",
            topics.events,
            "--policies-topic",
            topics.policies,
            "--fallback-budget",
            "2048",
        ],
        input=requests,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "STOPBANDIT_HMAC_KEY": KEY.decode()},
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["budget"], line["em"]) for line in lines] == [(2048, 1.0)] * 3
    events = events_by_request(broker, topics.events)
    assert sorted(events) == ["cli-0", "cli-1", "cli-2"]
    assert all(set(pair) == {"decision", "outcome"} for pair in events.values())
