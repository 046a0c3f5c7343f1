"""A serving node that cannot be locked out (issue 14): what PolicyClient refuses to hold.

Each case was reproduced against the client before these checks: a forged
policy with version 2**63 - 1 made every later real policy "older"; with a
key, an unsigned tombstone still deleted a segment and a validly signed
policy of any age was held; a duplicated key was read last-key-wins.
The versions below are what the daemon issues (controller/daemon/publish.py:
`version_floor`, microseconds of its wall clock), so the node's bound is
checked against the controller's own rule.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest
from structlog.testing import capture_logs

import stopbandit.policies.client as policy_client
from stopbandit.controller.daemon.publish import version_floor
from stopbandit.policies.client import PolicyClient
from stopbandit.policies.signing import sign, signature_of
from stopbandit.streams.events import Policy

ARMS = [0.5, 0.9, 1.0]
PMF = [0.0, 0.8, 0.2]
KEY = b"shared-secret"
DAY_S = 86_400.0
# Older than any freshness window a node would choose (the default is a week).
REPLAYED_AGE_S = 30 * DAY_S


def document(segment: str, version: int, issued_at: float, **changes: Any) -> dict[str, Any]:
    """A policy document as a controller would send it (no signature)."""
    policy = Policy(
        segment=segment, version=version, issued_at=issued_at, arms=ARMS, pmf=PMF, greedy=0.9
    )
    return policy.model_dump(mode="json", exclude_none=True) | changes


def signed(body: dict[str, Any]) -> dict[str, Any]:
    """`body` with the signature the shared key gives it."""
    return body | {"signature": signature_of(body, KEY)}


def value_of(body: dict[str, Any]) -> bytes:
    """The message value carrying `body`."""
    return json.dumps(body).encode()


def fresh_version() -> int:
    """The version a controller would give a policy issued now."""
    return version_floor(time.time())


# --- lockout through the version -------------------------------------------------------


def test_a_forged_top_version_does_not_lock_the_node_out():
    """Without a key, version 2**63 - 1 is refused, so the controller's next policy is held."""
    client = PolicyClient(fallback_threshold=1.0)
    forged = document("a", 2**63 - 1, time.time())
    assert not client.offer(b"a", value_of(forged))
    assert client.rejected == Counter({"version": 1})
    real = document("a", fresh_version(), time.time())
    assert client.offer(b"a", value_of(real))
    assert client.version("a") == real["version"]


def test_the_issue_reproduction_arms_and_version_together_are_refused():
    """The reproduced lockout message: arms [-5.0, 1e308] and version 2**63 - 1."""
    client = PolicyClient(fallback_threshold=1.0)
    forged = document("a", 1, time.time()) | {
        "version": 2**63 - 1,
        "arms": [-5.0, 1e308],
        "pmf": [0.5, 0.5],
        "greedy": -5.0,
    }
    assert not client.offer(b"a", value_of(forged))
    assert client.policies == {}
    assert client.version("a") == 0
    assert client.offer(b"a", value_of(document("a", fresh_version(), time.time())))


def test_the_version_bound_follows_the_node_clock():
    """A version up to the clock's ceiling (plus the allowance) is held; one above is not."""
    now_s = 1_800_000_000.0
    client = PolicyClient(fallback_threshold=1.0, clock=lambda: now_s)
    ceiling = policy_client.version_ceiling(now_s, policy_client.DEFAULT_MAX_VERSION_AHEAD_S)
    assert ceiling == int((now_s + policy_client.DEFAULT_MAX_VERSION_AHEAD_S) * 1_000_000)
    assert not client.offer(b"a", value_of(document("a", ceiling + 1, now_s)))
    assert client.rejected == Counter({"version": 1})
    assert client.offer(b"a", value_of(document("a", ceiling, now_s)))
    tight = PolicyClient(fallback_threshold=1.0, clock=lambda: now_s, max_version_ahead_s=0.0)
    assert not tight.offer(b"a", value_of(document("a", version_floor(now_s) + 1, now_s)))
    assert tight.offer(b"a", value_of(document("a", version_floor(now_s), now_s)))


def test_every_version_the_controller_issues_now_is_under_the_node_bound():
    """The daemon's floor, plus a million policies issued in one round, stays under the bound."""
    ahead_s = policy_client.DEFAULT_MAX_VERSION_AHEAD_S
    for now_s in (1_764_489_601.0, 1_800_000_000.123, 4_000_000_000.0):
        issued = version_floor(now_s) + 1_000_000
        assert issued <= policy_client.version_ceiling(now_s, ahead_s)
        # A node whose clock is a minute behind the controller's still holds it.
        assert version_floor(now_s + 60) <= policy_client.version_ceiling(now_s, ahead_s)
    assert policy_client.version_ceiling(4_000_000_000.0, ahead_s) < 2**53


def test_small_versions_of_the_policy_book_are_held():
    """Versions from a bare PolicyBook (1, 2, ...: simulate, tests) are far below the bound."""
    client = PolicyClient(fallback_threshold=1.0)
    assert client.offer(b"a", value_of(document("a", 1, time.time())))


# --- lockout through the arms ------------------------------------------------------------


@pytest.mark.parametrize(
    ("arms", "pmf", "greedy"),
    [
        pytest.param([-5.0, 1e308], [0.5, 0.5], -5.0, id="outside [0, 1]"),
        pytest.param([0.9, 0.5, 1.0], [0.0, 1.0, 0.0], 0.5, id="not ascending"),
        pytest.param([0.5, 0.5, 1.0], [0.0, 1.0, 0.0], 0.5, id="repeated arm"),
        pytest.param([0.5, 1.5], [1.0, 0.0], 0.5, id="above 1"),
    ],
)
def test_arms_the_confidence_knob_forbids_are_not_held(arms, pmf, greedy):
    """Confidence thresholds ascend within [0, 1]; anything else is refused as schema."""
    client = PolicyClient(fallback_threshold=1.0)
    bad = document("a", 1, time.time()) | {"arms": arms, "pmf": pmf, "greedy": greedy}
    assert not client.offer(b"a", value_of(bad))
    assert client.rejected == Counter({"schema": 1})
    assert client.version("a") == 0


@pytest.mark.parametrize(
    ("arms", "held"),
    [
        pytest.param([512, 1024, 4096], True, id="budgets"),
        pytest.param([0.5, 1024, 4096], False, id="below 1"),
        pytest.param([512.5, 1024, 4096], False, id="not an integer"),
    ],
)
def test_token_budget_arms_are_integers_of_at_least_one(arms, held):
    """With the token_budget knob the arms are budgets: integers >= 1."""
    client = PolicyClient(fallback_threshold=1.0)
    body = document("a", 1, time.time()) | {"knob": "token_budget", "arms": arms, "greedy": 1024}
    assert client.offer(b"a", value_of(body)) is held


# --- tombstones --------------------------------------------------------------------------


def test_with_a_key_an_unsigned_tombstone_does_not_delete():
    """A key-only message proves nothing about its sender, so a keyed node keeps the policy."""
    client = PolicyClient(fallback_threshold=1.0, hmac_key=KEY)
    assert client.offer(b"a", value_of(signed(document("a", fresh_version(), time.time()))))
    with capture_logs() as logs:
        assert not client.offer(b"a", None)
    assert "a" in client.policies
    assert client.rejected == Counter({"signature": 1})
    assert [(e["event"], e["kind"]) for e in logs] == [("policy.rejected", "signature")]


def test_without_a_key_a_tombstone_still_deletes():
    """No key, no authentication: the folding rule stays as it was (tombstones delete)."""
    client = PolicyClient(fallback_threshold=1.0)
    assert client.offer(b"a", value_of(document("a", 3, time.time())))
    assert client.offer(b"a", None)
    assert client.policies == {}
    assert client.version("a") == 3


# --- freshness ---------------------------------------------------------------------------


def test_with_a_key_a_signed_policy_older_than_the_window_is_not_held():
    """A validly signed policy replayed after compaction is refused once older than the window."""
    client = PolicyClient(fallback_threshold=1.0, hmac_key=KEY)
    old_s = time.time() - REPLAYED_AGE_S
    stale = signed(document("a", version_floor(old_s), old_s))
    assert not client.offer(b"a", value_of(stale))
    assert client.rejected == Counter({"stale": 1})
    assert client.policies == {}
    recent_s = time.time() - policy_client.DEFAULT_MAX_POLICY_AGE_S + DAY_S
    assert client.offer(b"a", value_of(signed(document("a", version_floor(recent_s), recent_s))))


def test_the_freshness_window_is_configurable_and_can_be_turned_off():
    """`max_policy_age_s` sets the window on the node's clock; None holds policies of any age."""
    now_s = 1_800_000_000.0
    body = signed(document("a", 7, now_s - 3_600.0))
    hour = PolicyClient(
        fallback_threshold=1.0, hmac_key=KEY, clock=lambda: now_s, max_policy_age_s=3_599.0
    )
    assert not hour.offer(b"a", value_of(body))
    assert hour.rejected == Counter({"stale": 1})
    off = PolicyClient(
        fallback_threshold=1.0, hmac_key=KEY, clock=lambda: now_s, max_policy_age_s=None
    )
    assert off.offer(b"a", value_of(body))


def test_a_held_policy_is_kept_as_it_ages():
    """Freshness is checked on arrival: a node cut off from the controller keeps serving."""
    clock = [1_800_000_000.0]
    client = PolicyClient(fallback_threshold=1.0, hmac_key=KEY, clock=lambda: clock[0])
    assert client.offer(b"a", value_of(signed(document("a", 7, clock[0]))))
    clock[0] += 10 * REPLAYED_AGE_S
    assert client.choose("r", "a").policy_version == 7


def test_freshness_without_a_key_is_not_checked():
    """An unsigned issued_at can say anything, so only signed policies are judged by age."""
    client = PolicyClient(fallback_threshold=1.0)
    assert client.offer(b"a", value_of(document("a", 1, 0.0)))


def test_bad_windows_are_refused_naming_the_field():
    """A window that is not a positive finite number is a configuration error."""
    with pytest.raises(ValueError, match="max_policy_age_s"):
        PolicyClient(fallback_threshold=1.0, max_policy_age_s=0.0)
    with pytest.raises(ValueError, match="max_version_ahead_s"):
        PolicyClient(fallback_threshold=1.0, max_version_ahead_s=float("inf"))
    with pytest.raises(ValueError, match="hmac_key"):
        PolicyClient(fallback_threshold=1.0, hmac_key=b"")


# --- duplicate keys ----------------------------------------------------------------------


def _duplicated(body: dict[str, Any], field: str, first: Any) -> bytes:
    """The JSON text of `body` with `field` written twice: `first`, then body's own value."""
    text = json.dumps(body)
    return ("{" + json.dumps(field) + ": " + json.dumps(first) + ", " + text[1:]).encode()


def test_a_signed_policy_with_a_duplicated_key_is_not_held():
    """`pmf` twice: Python reads the last, other parsers the first; the node reads neither."""
    client = PolicyClient(fallback_threshold=1.0, hmac_key=KEY)
    body = signed(document("a", fresh_version(), time.time()))
    value = _duplicated(body, "pmf", [1.0, 0.0, 0.0])
    assert not client.offer(b"a", value)
    assert client.rejected == Counter({"json": 1})
    assert client.policies == {}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b'{"segment": "a", "segment": "a", "v": 1}', id="top level"),
        pytest.param(
            json.dumps(document("a", 1, 1.0))[:-1].encode()
            + b', "reward": {"em_weight": 1.0, "em_weight": 0.0, "token_cost_per_1k": 0.02}}',
            id="nested",
        ),
    ],
)
def test_a_duplicated_key_anywhere_in_a_policy_is_rejected_without_a_key(value):
    """Without a key too: the same bytes must mean one policy in every language."""
    client = PolicyClient(fallback_threshold=1.0)
    with capture_logs() as logs:
        assert not client.offer(b"a", value)
    assert client.rejected == Counter({"json": 1})
    assert "duplicate key" in logs[-1]["reason"]


def test_a_duplicated_key_in_a_parsed_document_is_rejected():
    """Documents parsed by the client's reader (HTTP, files) carry the duplicate to the check."""
    client = PolicyClient(fallback_threshold=1.0)
    parsed = policy_client.parse_json(_duplicated(document("a", 1, 1.0), "greedy", 0.5))
    assert not client.offer_document(parsed)
    assert client.rejected == Counter({"json": 1})


# --- unauthenticated nodes ---------------------------------------------------------------


def test_without_a_key_the_client_warns_once_at_start():
    """Policies are unauthenticated without a key: said once, when the client starts."""
    with capture_logs() as logs:
        client = PolicyClient(fallback_threshold=1.0)
        client.offer(b"a", value_of(document("a", 1, time.time())))
        client.offer(b"b", value_of(document("b", 2, time.time())))
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == ["policy_client.unauthenticated"]
    with capture_logs() as logs:
        PolicyClient(fallback_threshold=1.0, hmac_key=KEY)
    assert [e for e in logs if e["log_level"] == "warning"] == []


def test_signed_policies_round_trip_through_sign():
    """`sign` output, as the daemon publishes it, is held by a keyed client with today's clock."""
    client = PolicyClient(fallback_threshold=1.0, hmac_key=KEY)
    policy = Policy.model_validate(document("a", fresh_version(), time.time()))
    value = sign(policy, KEY).model_dump_json(exclude_none=True).encode()
    assert client.offer(b"a", value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b'{"segment": "a", "version": ' + b"9" * 5000 + b"}", id="5000-digit integer"),
        pytest.param(b"[" * 50_000, id="deep nesting"),
    ],
)
def test_json_past_what_the_parser_reads_is_counted_not_raised(value):
    """Python's json raises ValueError or RecursionError here: counted, never out of offer."""
    client = PolicyClient(fallback_threshold=1.0)
    assert not client.offer(b"a", value)
    assert client.rejected == Counter({"json": 1})
