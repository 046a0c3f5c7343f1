"""A serving node in front of an OpenAI-compatible server: a thinking-token budget per request.

For vLLM or SGLang serving a reasoning model (docs/serving-nodes.md). Per
request the node:

1. draws the budget from `PolicyClient` (the policy's arms are budgets:
   `knob: token_budget`), seeded by the request id;
2. passes it to the engine in the request body: vLLM's `thinking_token_budget`
   (a sampling parameter, sent as an extra top-level field of the chat
   completion), SGLang's `custom_params.thinking_budget` (enforced exactly with
   `--enable-strict-thinking`);
3. logs the decision (`EventEmitter`, off the request path) once the engine
   answered, so a failed call leaves no decision waiting for an outcome;
4. logs the outcome when the grade arrives (`grade`), which may be much later
   than the answer: `join.wait_s` must cover that delay.

Only the base install (`pip install stopbandit`) and the standard library
(urllib) are used. Run it with requests as JSON lines on stdin:

    python examples/openai_budget_node.py --model Qwen/Qwen3-8B
        --engine-url http://vllm:8000/v1 --bootstrap kafka:9092 < requests.jsonl

each line `{"request_id": "r1", "segment": "math/gsm8k", "prompt": "...",
"answer": "42"}`; the node grades each answer at once with a math answer
checker (the last number must equal `answer`) and prints what it did.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import structlog

from stopbandit.policies.client import Choice, PolicyClient
from stopbandit.policies.emitter import EventEmitter
from stopbandit.policies.sources import TopicFollower
from stopbandit.streams.events import FALLBACK_SEGMENT, Outcome

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from stopbandit.streams.events import ContextValue, Event

Engine = Literal["vllm", "sglang"]
ENGINES: tuple[Engine, ...] = ("vllm", "sglang")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def request_body(
    engine: Engine, model: str, messages: list[dict[str, str]], budget: int, answer_tokens: int
) -> dict[str, Any]:
    """The chat completion request that asks `engine` to stop reasoning at `budget` tokens.

    Reasoning tokens count against `max_tokens` in both engines, so it leaves
    `answer_tokens` of room for the answer after a full budget.
    """
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": budget + answer_tokens,
    }
    if engine == "vllm":
        # Needs --reasoning-parser and --reasoning-config (the think start/end strings).
        body["thinking_token_budget"] = budget
    else:
        # Exact with --enable-strict-thinking (or the custom logit processor).
        body["custom_params"] = {"thinking_budget": budget}
    return body


def post_json(url: str, body: Mapping[str, Any], timeout_s: float, api_key: str | None) -> Any:  # noqa: ANN401 - the engine's JSON
    """POST `body` as JSON and return the parsed answer."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"engine url: {url!r} is not an http(s) URL")
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
        return json.loads(response.read())


def math_em(answer: str, reference: str) -> float:
    """A math answer checker: 1.0 when the answer's last number equals the reference."""
    numbers = NUMBER.findall(answer)
    if not numbers:
        return 0.0
    return float(math.isclose(float(numbers[-1]), float(reference), abs_tol=1e-9))


@dataclass(frozen=True)
class Served:
    """One answered request, waiting for its grade."""

    request_id: str
    segment: str
    budget: int
    answer: str
    tokens: int
    reasoning_tokens: int | None
    latency_ms: float


class BudgetNode:
    """Draws a budget per request, calls the engine, logs the decision and, later, the outcome.

    Args:
        client: the policies the node holds (fed by a `TopicFollower` or `HttpPoller`).
        emit: where events go (`EventEmitter.emit`).
        engine_url: the engine's OpenAI-compatible base URL (`http://host:8000/v1`).
        engine: `vllm` or `sglang`: how the budget is passed.
        model: the served model's name.
        fallback_budget: the budget when the request's policy is not a budget policy.
        answer_tokens: room for the answer after the reasoning, in tokens.
        max_pending: answered requests kept waiting for a grade; past it the oldest is
            forgotten (its outcome is never logged, and its decision expires in the join).
    """

    def __init__(
        self,
        client: PolicyClient,
        emit: Callable[[Event], object],
        *,
        engine_url: str,
        engine: Engine = "vllm",
        model: str = "model",
        fallback_budget: int = 32768,
        answer_tokens: int = 1024,
        timeout_s: float = 600.0,
        api_key: str | None = None,
        max_pending: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.emit = emit
        self.url = engine_url.rstrip("/") + "/chat/completions"
        self.engine: Engine = engine
        self.model = model
        self.fallback = Choice(float(fallback_budget), 1.0, 0, None)
        self.answer_tokens = answer_tokens
        self.timeout_s = timeout_s
        self.api_key = api_key
        self.max_pending = max_pending
        self.clock = clock
        self.pending: OrderedDict[str, Served] = OrderedDict()

    def choose(
        self, request_id: str, segment: str, context: Mapping[str, ContextValue] | None
    ) -> Choice:
        """The policy's draw, or the fallback budget when the policy's arms are no budgets."""
        choice = self.client.choose(request_id, segment, context)
        held = self.client.policies
        policy = held.get(segment) or held.get(FALLBACK_SEGMENT)
        if choice.policy_version and (policy is None or policy.knob != "token_budget"):
            # A confidence policy on a budget node is a configuration mistake: serve and
            # log the fallback (version 0), never a threshold misread as a budget.
            return self.fallback
        return choice

    def serve(
        self,
        request_id: str,
        segment: str,
        messages: list[dict[str, str]],
        context: Mapping[str, ContextValue] | None = None,
    ) -> Served:
        """Answer one request at the drawn budget and log its decision."""
        chosen_s = self.clock()
        choice = self.choose(request_id, segment, context)
        budget = round(choice.threshold)
        body = request_body(self.engine, self.model, messages, budget, self.answer_tokens)
        started_s = time.monotonic()
        answer = post_json(self.url, body, self.timeout_s, self.api_key)
        latency_ms = (time.monotonic() - started_s) * 1000.0
        usage = answer.get("usage") or {}
        details = usage.get("completion_tokens_details") or {}
        served = Served(
            request_id=request_id,
            segment=segment,
            budget=budget,
            answer=answer["choices"][0]["message"].get("content") or "",
            tokens=int(usage.get("completion_tokens", 0)),
            reasoning_tokens=details.get("reasoning_tokens"),
            latency_ms=latency_ms,
        )
        self.emit(choice.decision(request_id, segment, ts=chosen_s, context=context))
        self.pending[request_id] = served
        while len(self.pending) > self.max_pending:
            self.pending.popitem(last=False)
        return served

    def grade(self, request_id: str, em: float) -> Outcome | None:
        """Log the outcome of an answered request once its grade (EM in [0, 1]) is known.

        Returns:
            The outcome logged, or None for a request this node no longer holds.
        """
        served = self.pending.pop(request_id, None)
        if served is None:
            return None
        stopped = (
            None if served.reasoning_tokens is None else served.reasoning_tokens >= served.budget
        )
        outcome = Outcome(
            v=1,
            request_id=request_id,
            ts=self.clock(),
            segment=served.segment,
            em=em,
            tokens=served.tokens,
            stopped_early=stopped,
            latency_ms=served.latency_ms,
        )
        self.emit(outcome)
        return outcome


def main(argv: list[str] | None = None) -> int:
    """Serve JSON-lines requests from stdin, grade each with the math checker, log both events."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine-url", required=True, help="OpenAI-compatible base URL (/v1)")
    parser.add_argument("--engine", choices=ENGINES, default="vllm")
    parser.add_argument("--model", required=True)
    parser.add_argument("--bootstrap", required=True, help="Kafka brokers, host:port[,...]")
    parser.add_argument("--events-topic", default="stopbandit.events")
    parser.add_argument("--policies-topic", default="stopbandit.policies")
    parser.add_argument("--fallback-budget", type=int, default=32768)
    parser.add_argument(
        "--hmac-key-env", default="STOPBANDIT_HMAC_KEY", help="variable holding the signing key"
    )
    parser.add_argument("--catch-up-s", type=float, default=30.0, help="wait for the policies")
    args = parser.parse_args(argv)
    # The SDK's logs go to stderr; stdout carries one JSON line per request.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    key = os.environ.get(args.hmac_key_env)
    client = PolicyClient(
        fallback_threshold=float(args.fallback_budget), hmac_key=key.encode() if key else None
    )
    follower = TopicFollower(client, args.bootstrap, args.policies_topic).start()
    try:
        if not follower.wait_caught_up(args.catch_up_s):
            print(f"policies not caught up in {args.catch_up_s} s", file=sys.stderr)
        with EventEmitter(args.bootstrap, args.events_topic) as emitter:
            node = BudgetNode(
                client,
                emitter.emit,
                engine_url=args.engine_url,
                engine=args.engine,
                model=args.model,
                fallback_budget=args.fallback_budget,
                api_key=os.environ.get("OPENAI_API_KEY"),
            )
            for line in sys.stdin:
                if not line.strip():
                    continue
                request = json.loads(line)
                messages = [{"role": "user", "content": request["prompt"]}]
                served = node.serve(request["request_id"], request["segment"], messages)
                outcome = node.grade(served.request_id, math_em(served.answer, request["answer"]))
                em = outcome.em if outcome else None
                done = {"request_id": served.request_id, "budget": served.budget, "em": em}
                print(json.dumps({**done, "tokens": served.tokens}))
            emitter.flush()
    finally:
        follower.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
