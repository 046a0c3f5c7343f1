"""PolicyClient: draws, the version rule, signatures, fallbacks, folding, thread safety."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter

import pytest
from structlog.testing import capture_logs

from stopbandit.policies.client import Choice, PolicyClient
from stopbandit.policies.sampling import draw_index
from stopbandit.policies.signing import sign
from stopbandit.streams.codec import decode, encode
from stopbandit.streams.events import Policy

ARMS = [0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0]
KEY = b"shared-secret"


def make_policy(segment: str, version: int, pmf: list[float] | None = None) -> Policy:
    """A valid policy over ARMS; greedy is the most likely arm."""
    pmf = pmf or [0.0, 0.0, 0.1, 0.2, 0.4, 0.2, 0.1]
    greedy = ARMS[max(range(len(pmf)), key=pmf.__getitem__)]
    return Policy(
        segment=segment, version=version, issued_at=1.0, arms=ARMS, pmf=pmf, greedy=greedy
    )


def message(policy: Policy) -> tuple[bytes, bytes]:
    """The (key, value) the controller would produce for `policy`."""
    return policy.segment.encode(), policy.model_dump_json(exclude_none=True).encode()


def test_same_request_and_policy_give_the_same_threshold():
    """A draw is a function of the request_id and the policy, as draw_index defines it."""
    client = PolicyClient(fallback_threshold=1.0)
    policy = make_policy("a", 3)
    client.apply(policy)
    for i in range(200):
        first = client.choose(f"req-{i}", "a")
        assert client.choose(f"req-{i}", "a") == first
        k = draw_index(policy.pmf, f"req-{i}")
        assert (first.threshold, first.probability) == (ARMS[k], policy.pmf[k])
        assert first.policy_version == 3
        assert first.pmf == tuple(zip(ARMS, policy.pmf, strict=True))


def test_draws_follow_the_pmf_and_never_pick_a_zero_arm():
    """Over 20,000 fixed request ids the frequencies match the pmf within 1.5 points."""
    client = PolicyClient(fallback_threshold=1.0)
    policy = make_policy("a", 1)
    client.apply(policy)
    counts = Counter(client.choose(f"r{i}", "a").threshold for i in range(20_000))
    for arm, p in zip(ARMS, policy.pmf, strict=True):
        if p == 0.0:
            assert counts[arm] == 0
        else:
            assert abs(counts[arm] / 20_000 - p) < 0.015


def test_older_and_equal_versions_are_ignored():
    """A segment's version only moves up; duplicates and older versions change nothing."""
    client = PolicyClient(fallback_threshold=1.0)
    assert client.apply(make_policy("a", 5, [0, 0, 0, 0, 1, 0, 0]))
    assert not client.apply(make_policy("a", 3, [1, 0, 0, 0, 0, 0, 0]))
    assert not client.apply(make_policy("a", 5, [1, 0, 0, 0, 0, 0, 0]))
    assert client.choose("x", "a").threshold == 0.95
    assert client.version("a") == 5
    assert client.ignored == 2
    assert client.apply(make_policy("a", 7, [1, 0, 0, 0, 0, 0, 0]))
    assert client.choose("x", "a") == Choice(
        0.5, 1.0, 7, tuple(zip(ARMS, [1, 0, 0, 0, 0, 0, 0], strict=True))
    )


def test_versions_are_per_segment():
    """A high version in one segment does not hide a lower one in another."""
    client = PolicyClient(fallback_threshold=1.0)
    client.apply(make_policy("a", 10))
    assert client.apply(make_policy("b", 2))
    assert client.max_version == 10


@pytest.mark.parametrize(
    ("case", "document"),
    [
        ("unsigned", make_policy("a", 1).model_dump(mode="json", exclude_none=True)),
        (
            "tampered",
            {**sign(make_policy("a", 1), KEY).model_dump(mode="json"), "greedy": 0.5},
        ),
        ("wrong key", sign(make_policy("a", 1), b"another-key").model_dump(mode="json")),
        (
            "not hmac",
            {**make_policy("a", 1).model_dump(mode="json", exclude_none=True), "signature": "x"},
        ),
    ],
)
def test_a_client_with_a_key_rejects_unsigned_and_badly_signed(case, document):
    """With a key configured, only policies signed with that key are held."""
    client = PolicyClient(fallback_threshold=1.0, hmac_key=KEY)
    with capture_logs() as logs:
        assert not client.offer(b"a", json.dumps(document).encode()), case
    assert client.rejected == Counter({"signature": 1})
    assert client.policies == {}
    assert [e["event"] for e in logs] == ["policy.rejected"]
    assert logs[0]["kind"] == "signature"


def test_a_client_with_a_key_holds_a_correctly_signed_policy():
    """A policy signed with the shared key passes, also with fields this version does not know."""
    # The node's clock reads make_policy's issued_at: the policy is fresh.
    client = PolicyClient(fallback_threshold=1.0, hmac_key=KEY, clock=lambda: 1.0)
    document = make_policy("a", 1).model_dump(mode="json", exclude_none=True)
    document["future_field"] = {"x": 1}
    from stopbandit.policies.signing import signature_of  # noqa: PLC0415 - only this test needs it

    document["signature"] = signature_of(document, KEY)
    assert client.offer(b"a", json.dumps(document).encode())
    assert client.version("a") == 1


def test_a_client_without_a_key_accepts_signed_and_unsigned():
    """Verification is opt-in: no key, no signature check."""
    client = PolicyClient(fallback_threshold=1.0)
    assert client.offer(*message(sign(make_policy("a", 1), KEY)))
    assert client.offer(*message(make_policy("b", 1)))


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (b"{not json", "json"),
        (b"[1, 2]", "json"),
        (b'{"segment": "a", "version": 1}', "schema"),
        (
            json.dumps({**make_policy("a", 1).model_dump(mode="json"), "pmf": [0.5] * 7}).encode(),
            "schema",
        ),
        (
            json.dumps({**make_policy("a", 1).model_dump(mode="json"), "greedy": 0.6}).encode(),
            "schema",
        ),
        (json.dumps(make_policy("b", 1).model_dump(mode="json")).encode(), "key"),
    ],
)
def test_invalid_messages_are_counted_not_raised(value, kind):
    """Bad policies never stop the node: they are counted by kind and the state is unchanged."""
    client = PolicyClient(fallback_threshold=1.0)
    assert not client.offer(b"a", value)
    assert client.rejected == Counter({kind: 1})
    assert client.policies == {}


def test_unknown_segment_falls_back_to_star_then_to_the_configured_threshold():
    """Segment policy, then the `*` policy, then the configured fallback with version 0."""
    client = PolicyClient(fallback_threshold=0.99)
    assert client.choose("r", "a") == Choice(0.99, 1.0, 0, None)
    client.apply(make_policy("*", 4, [0, 0, 0, 1, 0, 0, 0]))
    assert client.choose("r", "a") == Choice(
        0.9, 1.0, 4, tuple(zip(ARMS, [0, 0, 0, 1, 0, 0, 0], strict=True))
    )
    client.apply(make_policy("a", 5, [0, 1, 0, 0, 0, 0, 0]))
    assert client.choose("r", "a").threshold == 0.7
    assert client.choose("r", "other").threshold == 0.9
    client.offer(b"*", None)
    assert client.choose("r", "other") == Choice(0.99, 1.0, 0, None)


def test_folding_a_log_with_duplicates_out_of_order_versions_and_tombstones():
    """Reading an uncompacted log from the beginning gives the newest live policy per segment."""
    point = {arm: [1.0 if a == arm else 0.0 for a in ARMS] for arm in ARMS}
    log_records = [
        message(make_policy("a", 3, point[0.9])),
        message(make_policy("a", 1, point[0.5])),  # older, arrives later
        message(make_policy("a", 3, point[0.5])),  # same version again
        message(make_policy("b", 2, point[0.8])),
        (b"b", None),  # tombstone
        message(make_policy("b", 1, point[0.7])),  # older than the tombstoned one: stays dead
        message(make_policy("c", 4, point[0.7])),
        (b"c", None),
        message(make_policy("c", 6, point[0.99])),  # newer after a tombstone: back
        (b"d", None),  # tombstone of a segment never seen
        (b"a", b"garbage"),
        message(make_policy("*", 5, point[1.0])),
    ]
    client = PolicyClient(fallback_threshold=1.0)
    for key, value in log_records:
        client.offer(key, value)
    assert {s: p.version for s, p in client.policies.items()} == {"a": 3, "c": 6, "*": 5}
    assert client.choose("r", "a").threshold == 0.9
    assert client.choose("r", "b").threshold == 1.0  # the `*` policy
    assert client.choose("r", "c").threshold == 0.99
    assert client.version("b") == 2
    assert client.rejected == Counter({"json": 1})
    assert client.ignored == 3


def test_choice_logs_a_valid_decision():
    """The decision built from a choice passes the wire codec unchanged."""
    client = PolicyClient(fallback_threshold=1.0)
    client.apply(make_policy("a", 2))
    for choice in (client.choose("r-1", "a"), client.choose("r-1", "nope-no-star")):
        decision = choice.decision("r-1", "a", 10.0, {"task": "gsm8k"})
        assert decode(b"a", encode(decision)) == decision


def test_wait_for_returns_once_a_version_arrives():
    """wait_for wakes when a writer thread applies the awaited version."""
    client = PolicyClient(fallback_threshold=1.0)
    assert not client.wait_for(1, timeout_s=0.01)
    writer = threading.Thread(target=client.apply, args=(make_policy("a", 9),))
    writer.start()
    assert client.wait_for(9, timeout_s=10.0)
    writer.join()


def test_wait_covers_needs_every_segment_at_its_version():
    """wait_covers is true only once each listed segment has reached its version."""
    client = PolicyClient(fallback_threshold=1.0)
    client.apply(make_policy("a", 3))
    assert client.wait_covers({"a": 3}, timeout_s=0.0)
    assert not client.wait_covers({"a": 3, "*": 4}, timeout_s=0.01)
    client.apply(make_policy("*", 5))
    assert client.wait_covers({"a": 2, "*": 4}, timeout_s=0.0)
    assert not client.wait_covers({"a": 4}, timeout_s=0.0)


def _pmf_of(version: int) -> list[float]:
    """A distinct pmf per version, so a reader can tell whether a draw mixed two versions."""
    k = version % len(ARMS)
    pmf = [0.0] * len(ARMS)
    pmf[k] = 0.6
    pmf[(k + 1) % len(ARMS)] = 0.3
    pmf[(k + 3) % len(ARMS)] = 0.1
    return pmf


def _check_choice(choice: Choice, request_id: str, segment: str, last: dict[str, int]) -> list[str]:
    """What is wrong with a choice drawn while versions change (see the test below)."""
    errors = []
    pmf = _pmf_of(choice.policy_version)
    k = draw_index(pmf, request_id)
    if choice.pmf != tuple(zip(ARMS, pmf, strict=True)) or choice.threshold != ARMS[k]:
        errors.append(f"torn: {choice}")
    if choice.probability != pmf[k]:
        errors.append(f"probability: {choice}")
    source = ["a", "b", "*"][choice.policy_version % 3]
    if source not in (segment, "*"):
        errors.append(f"{segment} drew from {source}")
    if choice.policy_version < last.get(source, 0):
        errors.append(f"version went back: {source} {choice.policy_version}")
    last[source] = choice.policy_version
    return errors


def test_concurrent_choose_sees_whole_policies_while_they_change():
    """Readers never see a torn policy, and each sees versions only increase, under 4 threads."""
    client = PolicyClient(fallback_threshold=1.0)
    segments = ["a", "b", "*"]  # version v always belongs to segments[v % 3]
    for version in (3, 4, 5):
        client.apply(make_policy(segments[version % 3], version, _pmf_of(version)))
    stop = threading.Event()
    errors: list[str] = []
    reads = [0] * 4

    def read(worker: int) -> None:
        last: dict[str, int] = {}
        i = 0
        while not stop.is_set() or i < 2000:
            segment = segments[i % 2] if i % 7 else "unknown"
            request_id = f"w{worker}-{i}"
            choice = client.choose(request_id, segment)
            i += 1
            if choice.policy_version == 0:  # every policy it could use was tombstoned
                continue
            errors.extend(_check_choice(choice, request_id, segment, last))
        reads[worker] = i

    readers = [threading.Thread(target=read, args=(w,)) for w in range(4)]
    for thread in readers:
        thread.start()
    for version in range(6, 3000):
        segment = segments[version % 3]
        client.apply(make_policy(segment, version, _pmf_of(version)))
        if version % 500 == 0:
            client.offer(segment.encode(), None)  # tombstones in the mix
    stop.set()
    for thread in readers:
        thread.join()
    assert errors == []
    assert min(reads) >= 2000
    assert client.max_version == 2999


def test_importing_the_client_and_emitter_pulls_no_heavy_or_controller_modules():
    """A serving node imports only the standard library, pydantic, structlog and kafka-python."""
    code = (
        "import json, sys\n"
        "import policies.client\n"
        "client_only = sorted(sys.modules)\n"
        "import policies.emitter, policies.sources\n"
        "print(json.dumps([client_only, sorted(sys.modules)]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    client_only, everything = json.loads(result.stdout)
    forbidden = ("numpy", "vowpal_wabbit_next", "vowpalwabbit", "prometheus_client", "controller")
    for name in everything:
        assert name.split(".")[0] not in forbidden, name
    assert not any(name.split(".")[0] == "kafka" for name in client_only)
    assert "kafka" in everything  # the check can see an import when there is one
