"""Policy signatures: the documented rule byte for byte, and every way a document can fail it.

The rule (docs/wire-contract.md): HMAC-SHA256 with the shared key over the
canonical JSON of the policy without `signature`: keys sorted, no spaces.
Where SCHEMA.md is silent, the implementation writes UTF-8 as is (no backslash-u
escapes), omits null fields, and never writes NaN; the literal vectors
below pin those choices so a node in another language can check itself.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from typing import Any

import pytest

from stopbandit.policies.signing import SIGNATURE_PREFIX, canonical_json, sign, signature_of, verify
from stopbandit.streams.events import Policy, RewardWeights

KEY = b"shared-key"
POLICY = Policy(
    segment="math/gsm8k",
    version=7,
    issued_at=1764489601.0,
    model_id="m1",
    arms=[0.9, 1.0],
    pmf=[0.25, 0.75],
    greedy=1.0,
    reward=RewardWeights(em_weight=1.0, token_cost_per_1k=0.02),
)
# The canonical bytes of POLICY, written out by hand from the rule.
CANONICAL = (
    b'{"arms":[0.9,1.0],"greedy":1.0,"issued_at":1764489601.0,"model_id":"m1",'
    b'"pmf":[0.25,0.75],"reward":{"em_weight":1.0,"token_cost_per_1k":0.02},'
    b'"segment":"math/gsm8k","v":1,"version":7}'
)
# hmac.new(KEY, CANONICAL, hashlib.sha256).hexdigest(), for nodes to test against.
EXPECTED_HEX = "22ec342ac734d13c4f322a8605cd8bb1bd839f47ca59a638864731aeae7b7628"


def received(policy: Policy) -> dict[str, Any]:
    """The document a node parses: the policy as published (no nulls), through JSON text."""
    document: dict[str, Any] = json.loads(policy.model_dump_json(exclude_none=True))
    return document


def test_signature_follows_the_documented_rule() -> None:
    """sign() gives hmac-sha256: + HMAC-SHA256(key, canonical bytes), hex."""
    expected = hmac.new(KEY, CANONICAL, hashlib.sha256).hexdigest()
    assert expected == EXPECTED_HEX
    assert sign(POLICY, KEY).signature == SIGNATURE_PREFIX + EXPECTED_HEX
    assert SIGNATURE_PREFIX == "hmac-sha256:"


def test_canonical_json_is_sorted_and_compact() -> None:
    """The signed bytes are exactly the hand-written canonical form."""
    assert canonical_json(received(POLICY)) == CANONICAL


def test_canonical_json_writes_utf8_unescaped() -> None:
    """Non-ASCII characters are UTF-8 bytes, not backslash-u escapes."""
    assert canonical_json({"segment": "é", "a": 1}) == b'{"a":1,"segment":"\xc3\xa9"}'


def test_canonical_json_refuses_nan() -> None:
    """NaN has no JSON form, so nothing with NaN can be signed."""
    with pytest.raises(ValueError, match="JSON compliant"):
        canonical_json({"x": float("nan")})


def test_signed_policy_verifies_after_the_wire() -> None:
    """Round trip: sign, publish as JSON, parse, verify with the same key."""
    signed = sign(POLICY, KEY)
    document = received(signed)
    assert document["signature"] == SIGNATURE_PREFIX + EXPECTED_HEX
    assert verify(document, KEY)
    assert Policy.model_validate(document) == signed


def test_signing_is_idempotent_and_leaves_the_original() -> None:
    """Signing a signed policy gives the same signature; the input is not changed."""
    signed = sign(POLICY, KEY)
    assert sign(signed, KEY) == signed
    assert POLICY.signature is None


def test_wrong_key_fails() -> None:
    """A node holding another key rejects the policy."""
    document = received(sign(POLICY, KEY))
    assert not verify(document, b"other-key")
    assert not verify(document, b"")


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(None, id="null"),
        pytest.param(7, id="number"),
        pytest.param("", id="empty"),
        pytest.param(EXPECTED_HEX, id="without prefix"),
        pytest.param(SIGNATURE_PREFIX + EXPECTED_HEX.upper(), id="upper-case hex"),
        pytest.param(SIGNATURE_PREFIX + EXPECTED_HEX[:-1], id="truncated"),
        pytest.param(SIGNATURE_PREFIX + "é" * 64, id="non-ASCII"),
    ],
)
def test_malformed_signature_fails_without_raising(signature: object) -> None:
    """Whatever sits in `signature`, verify answers False rather than raising."""
    document = received(POLICY)
    document["signature"] = signature
    assert not verify(document, KEY)


def test_unsigned_policy_fails() -> None:
    """A node configured with a key rejects a policy without signature."""
    assert not verify(received(POLICY), KEY)


def _tampered() -> list[tuple[str, Any]]:
    changes: list[tuple[str, Any]] = [
        ("v", 2),
        ("segment", "math/gsm8k "),
        ("version", 8),
        ("issued_at", 1764489601.5),
        ("model_id", "m2"),
        ("arms", [0.9, 0.99]),
        ("pmf", [0.75, 0.25]),
        ("greedy", 0.9),
        ("reward", {"em_weight": 1.0, "token_cost_per_1k": 0.0}),
        ("estimates", {"em": [0.1, 0.2], "tokens": [1, 2], "n": [1, 1]}),
        ("extra", "added by someone"),
    ]
    return changes


@pytest.mark.parametrize(("field", "value"), _tampered(), ids=[f for f, _ in _tampered()])
def test_any_changed_or_added_field_fails(field: str, value: Any) -> None:
    """Tampering with any field, or adding one, breaks the signature."""
    document = received(sign(POLICY, KEY))
    document[field] = value
    assert not verify(document, KEY)


@pytest.mark.parametrize("field", ["segment", "version", "pmf", "reward", "model_id"])
def test_removed_field_fails(field: str) -> None:
    """Dropping a signed field breaks the signature."""
    document = received(sign(POLICY, KEY))
    del document[field]
    assert not verify(document, KEY)


def test_nested_change_fails() -> None:
    """A change deep inside `reward` is a change too."""
    document = received(sign(POLICY, KEY))
    document["reward"]["token_cost_per_1k"] = 0.021
    assert not verify(document, KEY)


def test_key_order_and_spacing_of_the_received_text_do_not_matter() -> None:
    """Verification canonicalises the parsed document, so any JSON layout verifies."""
    document = received(sign(POLICY, KEY))
    reordered = json.loads(json.dumps(dict(reversed(list(document.items()))), indent=2))
    assert verify(reordered, KEY)


def test_field_unknown_to_this_version_still_counts() -> None:
    """A newer controller's extra field is covered by the signature it sent."""
    document = received(POLICY) | {"future": {"b": 1, "a": [True, None]}}
    document["signature"] = signature_of(document, KEY)
    assert verify(copy.deepcopy(document), KEY)
    body = {k: v for k, v in document.items() if k != "signature"}
    assert canonical_json(body) == CANONICAL.replace(
        b'"greedy"', b'"future":{"a":[true,null],"b":1},"greedy"'
    )


def test_nan_in_received_document_fails_without_raising() -> None:
    """A document with NaN (which Python's json parses) is not validly signed."""
    document = received(sign(POLICY, KEY))
    document["issued_at"] = float("nan")
    assert not verify(document, KEY)
