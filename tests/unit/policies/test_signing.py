"""Policy signatures: the documented rule byte for byte, and every way a document can fail it.

The rule (docs/wire-contract.md, revision 1.1): HMAC-SHA256 with the shared key
over the UTF-8 bytes of the RFC 8785 (JCS) form of the policy without
`signature`: keys sorted by UTF-16 code units, no spaces, numbers as
ECMAScript writes them (`1` for 1.0), strings UTF-8 as is. The literal vectors
below are written out by hand from that rule, so a node in another language
can check itself against them; tests/unit/policies/test_signing_node.py has a
Node.js verifier check the controller's signatures.
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
# A policy document as a node receives it (what json.loads gives for the text Python sends).
DOCUMENT: dict[str, Any] = {
    "v": 1,
    "segment": "math/gsm8k",
    "version": 7,
    "issued_at": 1764489601.0,
    "model_id": "m1",
    "arms": [0.9, 1.0],
    "pmf": [0.25, 0.75],
    "greedy": 1.0,
    "reward": {"em_weight": 1.0, "token_cost_per_1k": 0.02},
}
# Its RFC 8785 bytes, written out by hand from the rule: 1.0 is written 1.
CANONICAL = (
    b'{"arms":[0.9,1],"greedy":1,"issued_at":1764489601,"model_id":"m1",'
    b'"pmf":[0.25,0.75],"reward":{"em_weight":1,"token_cost_per_1k":0.02},'
    b'"segment":"math/gsm8k","v":1,"version":7}'
)
# hmac.new(KEY, CANONICAL, hashlib.sha256).hexdigest(), for nodes to test against.
EXPECTED_HEX = "cbd45534daebb029bcbae25e65fc1b9cc2bb6014b6084e62efe8bd5a446c5a26"


def received(policy: Policy) -> dict[str, Any]:
    """The document a node parses: the policy as published (no nulls), through JSON text."""
    document: dict[str, Any] = json.loads(policy.model_dump_json(exclude_none=True))
    return document


def test_signature_follows_the_documented_rule() -> None:
    """signature_of gives hmac-sha256: + HMAC-SHA256(key, JCS bytes), lowercase hex."""
    expected = hmac.new(KEY, CANONICAL, hashlib.sha256).hexdigest()
    assert expected == EXPECTED_HEX
    assert signature_of(DOCUMENT, KEY) == SIGNATURE_PREFIX + EXPECTED_HEX
    assert SIGNATURE_PREFIX == "hmac-sha256:"


def test_sign_covers_the_policy_as_published() -> None:
    """sign() signs the published document: the vector's, plus any field the model adds."""
    published = received(POLICY)
    assert {k: v for k, v in published.items() if k in DOCUMENT} == DOCUMENT
    assert sign(POLICY, KEY).signature == signature_of(published, KEY)
    if published == DOCUMENT:
        assert sign(POLICY, KEY).signature == SIGNATURE_PREFIX + EXPECTED_HEX


def test_canonical_json_is_rfc8785() -> None:
    """The signed bytes are exactly the hand-written canonical form."""
    assert canonical_json(DOCUMENT) == CANONICAL


@pytest.mark.parametrize(
    ("value", "written"),
    [
        pytest.param(1.0, b"1", id="1.0"),
        pytest.param(1e-7, b"1e-7", id="1e-7"),
        pytest.param(0.1 + 0.2, b"0.30000000000000004", id="0.1+0.2"),
        pytest.param(-0.0, b"0", id="negative zero"),
        pytest.param(1e21, b"1e+21", id="1e21"),
        pytest.param(1e20, b"100000000000000000000", id="1e20"),
        pytest.param(2**53 - 1, b"9007199254740991", id="2**53-1"),
        pytest.param(1764489601.123, b"1764489601.123", id="timestamp"),
    ],
)
def test_numbers_are_written_as_ecmascript_writes_them(value: float, written: bytes) -> None:
    """The number form of RFC 8785 (ECMAScript's Number.prototype.toString)."""
    assert canonical_json({"x": value}) == b'{"x":' + written + b"}"


def test_integers_past_a_double_are_read_as_the_double_other_languages_read() -> None:
    """1e20 arrives as the text 100000000000000000000: Python parses an int, Node.js a double."""
    document = dict(DOCUMENT, estimates={"em": [1.0, 1.0], "tokens": [1e20, 2.0**60], "n": [1, 1]})
    document["signature"] = signature_of(document, KEY)
    text = canonical_json(document)
    assert b"100000000000000000000" in text
    assert verify(json.loads(text), KEY)


def test_canonical_json_orders_keys_by_utf16_code_units() -> None:
    """U+1F600 (D83D DE00 in UTF-16) sorts before U+FB01, unlike by code point."""
    assert canonical_json({"\ufb01": 1, "😀": 2, "a": 3}) == '{"a":3,"😀":2,"\ufb01":1}'.encode()


def test_canonical_json_writes_utf8_unescaped() -> None:
    """Non-ASCII characters are UTF-8 bytes, not backslash-u escapes."""
    assert canonical_json({"segment": "é", "a": 1}) == b'{"a":1,"segment":"\xc3\xa9"}'


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "not representable"),
        (float("inf"), "not representable"),
        (10**400, "past a double's range"),
        ("\ud800", "non-UTF-8"),
    ],
    ids=["NaN", "Infinity", "past a double", "lone surrogate"],
)
def test_canonical_json_refuses_what_jcs_cannot_write(value: Any, message: str) -> None:
    """NaN, Infinity, numbers no double holds and lone surrogates have no JCS form."""
    with pytest.raises(ValueError, match=message):
        canonical_json({"x": value})


def test_signed_policy_verifies_after_the_wire() -> None:
    """Round trip: sign, publish as JSON, parse, verify with the same key."""
    signed = sign(POLICY, KEY)
    document = received(signed)
    assert document["signature"] == signature_of(received(POLICY), KEY)
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
        pytest.param(SIGNATURE_PREFIX + EXPECTED_HEX + "0", id="one digit more"),
        pytest.param(SIGNATURE_PREFIX + "é" * 64, id="non-ASCII"),
    ],
)
def test_malformed_signature_fails_without_raising(signature: object) -> None:
    """Whatever sits in `signature`, verify answers False rather than raising."""
    document = dict(DOCUMENT, signature=signature)
    assert signature_of(DOCUMENT, KEY) == SIGNATURE_PREFIX + EXPECTED_HEX
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
    document = DOCUMENT | {"future": {"b": 1, "a": [True, None]}}
    document["signature"] = signature_of(document, KEY)
    assert verify(copy.deepcopy(document), KEY)
    body = {k: v for k, v in document.items() if k != "signature"}
    assert canonical_json(body) == CANONICAL.replace(
        b'"greedy"', b'"future":{"a":[true,null],"b":1},"greedy"'
    )


def test_the_1_0_form_no_longer_verifies() -> None:
    """A signature over sorted json.dumps (revision 1.0, which writes 1.0) is refused."""
    old = json.dumps(DOCUMENT, sort_keys=True, separators=(",", ":")).encode()
    assert old != CANONICAL
    document = DOCUMENT | {
        "signature": SIGNATURE_PREFIX + hmac.new(KEY, old, hashlib.sha256).hexdigest()
    }
    assert not verify(document, KEY)


def test_nan_in_received_document_fails_without_raising() -> None:
    """A document with NaN (which Python's json parses) is not validly signed."""
    document = received(sign(POLICY, KEY))
    document["issued_at"] = float("nan")
    assert not verify(document, KEY)
