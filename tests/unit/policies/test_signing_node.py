"""Policies the controller signs verify in Node.js, by a verifier written from the contract alone.

tests/helpers/node/verify_policy.mjs uses npm's `canonicalize` (RFC 8785) and
node:crypto, nothing of this project. Each policy goes to it as a node would
receive it, in both forms the controller sends: the policies topic's value
(`policy_value`) and the /policies endpoint's JSON (pydantic's, which writes
`1.0`). The numbers are the ones where Python's `json.dumps` and ECMAScript
disagree, the names are not ASCII, and a tampered policy and one signed the
1.0 way (sorted `json.dumps`) must be refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from stopbandit.controller.daemon.publish import policy_value
from stopbandit.policies.signing import SIGNATURE_PREFIX, canonical_json, sign, signature_of, verify
from stopbandit.streams.events import ArmEstimates, Policy, RewardWeights

NODE_DIR = Path(__file__).resolve().parents[2] / "helpers" / "node"
VERIFIER = NODE_DIR / "verify_policy.mjs"
KEY = b"shared-key"


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with the verifier's one npm dependency installed from its lock file."""
    binary = shutil.which("node")
    if binary is None:
        pytest.skip("node is not on PATH: the Node.js verifier cannot run here")
    if not (NODE_DIR / "node_modules" / "canonicalize").is_dir():
        npm = shutil.which("npm")
        assert npm is not None, "node is here but npm is not: cannot install `canonicalize`"
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert installed.returncode == 0, f"npm ci in {NODE_DIR} failed:\n{installed.stderr}"
    return binary


def node_verdicts(node: str, messages: list[str], key: bytes = KEY) -> list[dict[str, Any]]:
    """What the Node.js verifier says of each message text (one process for all)."""
    lines = "".join(json.dumps({"key": key.decode(), "message": m}) + "\n" for m in messages)
    done = subprocess.run(
        [node, str(VERIFIER)],
        input=lines,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    verdicts = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(verdicts) == len(messages), done.stdout
    return verdicts


def awkward_policies() -> list[Policy]:
    """Policies whose numbers and names a sorted json.dumps writes differently from ECMAScript."""
    return [
        Policy(
            segment="数学/gsm8k",
            version=2**53 - 1,
            issued_at=1764489601.0,
            model_id="m1",
            arms=[1e-7, 0.1 + 0.2, 1.0],
            pmf=[0.1 + 0.2, 0.7, 0.0],
            greedy=1.0,
            reward=RewardWeights(em_weight=1.0, token_cost_per_1k=1e-7),
            estimates=ArmEstimates(
                em=[-0.0, 0.5, 1.0],
                tokens=[float(2**53 - 1), 1e21, 1e20],
                n=[5e-324, 1.7976931348623157e308, 123456789.125],
            ),
        ),
        Policy(
            segment="é",
            version=18,
            issued_at=1764489601.5,
            arms=[0.5, 0.95, 1.0],
            pmf=[0.0, 1.0, 0.0],
            greedy=0.95,
        ),
        Policy(
            segment="🧮/aime/r1-蒸馏",
            version=1_764_489_601_000_000,
            issued_at=1e9,
            knob="token_budget",
            arms=[512.0, 1024.0, 32768.0],
            pmf=[0.25, 0.5, 0.25],
            greedy=1024.0,
            reward=RewardWeights(em_weight=1.0, token_cost_per_1k=0.02),
        ),
    ]


def sent_forms(policy: Policy) -> list[str]:
    """The signed policy as the topic carries it and as /policies serves it."""
    signed = sign(policy, KEY)
    return [policy_value(signed).decode(), signed.model_dump_json(exclude_none=True)]


def test_node_verifies_what_the_controller_signs_in_both_forms(node: str) -> None:
    """Every awkward policy verifies in Node.js, from the topic's bytes and from /policies."""
    messages = [text for policy in awkward_policies() for text in sent_forms(policy)]
    verdicts = node_verdicts(node, messages)
    assert [v["ok"] for v in verdicts] == [True] * len(messages), verdicts
    for text, verdict in zip(messages, verdicts, strict=True):
        body = {k: v for k, v in json.loads(text).items() if k != "signature"}
        # Both languages canonicalise the received document to the same bytes.
        assert verdict["canonical"].encode() == canonical_json(body)
        assert verify(json.loads(text), KEY)


def test_the_awkward_numbers_are_written_the_ecmascript_way() -> None:
    """The canonical bytes hold 1 not 1.0, 1e-7, 1e+21, 0 for -0.0: what Node.js writes."""
    document = json.loads(sent_forms(awkward_policies()[0])[1])
    canonical = canonical_json({k: v for k, v in document.items() if k != "signature"}).decode()
    for written in ('"greedy":1,', '"arms":[1e-7,0.30000000000000004,1]', '"em":[0,0.5,1]'):
        assert written in canonical
    assert '"tokens":[9007199254740991,1e+21,100000000000000000000]' in canonical
    assert '"segment":"数学/gsm8k"' in canonical
    assert "1.0" not in canonical


def test_node_verifies_fields_unknown_to_the_models_in_utf16_key_order(node: str) -> None:
    """Extra fields with non-ASCII keys: JCS orders keys by UTF-16 code units, not code points."""
    document = awkward_policies()[1].model_dump(mode="json", exclude_none=True)
    # U+1F600 is D83D DE00 in UTF-16, so it sorts before U+FB01, unlike by code point.
    document |= {"\ufb01": 1.0, "😀": [1.0, {"b": -0.0, "a": 1e-7}], "é": "x"}
    document["signature"] = signature_of(document, KEY)
    (verdict,) = node_verdicts(node, [json.dumps(document, ensure_ascii=False)])
    assert verdict["ok"], verdict
    assert verdict["canonical"].index('"😀"') < verdict["canonical"].index('"\ufb01"')


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("pmf", [0.0, 0.0, 1.0]),
        ("segment", "é "),
        ("version", 19),
        ("issued_at", 1764489601.25),
        ("signature", SIGNATURE_PREFIX + "0" * 64),
    ],
)
def test_node_rejects_a_tampered_policy(node: str, field: str, value: Any) -> None:
    """A changed field, or a forged signature, fails in Node.js as it does in Python."""
    document = json.loads(sent_forms(awkward_policies()[1])[0])
    document[field] = value
    (verdict,) = node_verdicts(node, [json.dumps(document)])
    assert verdict == {"ok": False, "reason": "mismatch", "canonical": verdict["canonical"]}
    assert not verify(document, KEY)


def test_node_rejects_an_unsigned_policy_and_another_key(node: str) -> None:
    """No signature, or the right form under another key: refused."""
    unsigned = awkward_policies()[1].model_dump_json(exclude_none=True)
    signed = sent_forms(awkward_policies()[1])[0]
    verdicts = node_verdicts(node, [unsigned, signed], key=b"other-key")
    assert [(v["ok"], v["reason"]) for v in verdicts] == [(False, "unsigned"), (False, "mismatch")]


def old_signature(document: dict[str, Any], key: bytes) -> str:
    """The 1.0 form: HMAC over Python's sorted, compact json.dumps."""
    body = {k: v for k, v in document.items() if k != "signature"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return SIGNATURE_PREFIX + hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def test_node_rejects_a_policy_signed_the_old_way(node: str) -> None:
    """Signed over sorted json.dumps (which writes 1.0), a policy fails in Node.js: the 1.0 bug."""
    document = awkward_policies()[1].model_dump(mode="json", exclude_none=True)
    assert document["arms"][-1] == 1.0
    document["signature"] = old_signature(document, KEY)
    (verdict,) = node_verdicts(node, [json.dumps(document)])
    assert (verdict["ok"], verdict["reason"]) == (False, "mismatch")
    # The controller's verifier moved with it: nodes and controller change form together.
    assert not verify(document, KEY)
