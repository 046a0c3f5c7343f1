"""HMAC-SHA256 signatures of policies (docs/wire-contract.md).

The signature covers the canonical JSON of the policy without its
`signature` field: keys sorted, no spaces. A node holding the key rejects
an unsigned or badly signed policy.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stopbandit.streams.events import Policy

SIGNATURE_PREFIX = "hmac-sha256:"


def canonical_json(document: dict[str, Any]) -> bytes:
    """Keys sorted, no spaces, UTF-8: the bytes the signature covers."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def _unsigned_document(policy: Policy) -> dict[str, Any]:
    document = policy.model_dump(mode="json", exclude_none=True)
    document.pop("signature", None)
    return document


def signature_of(document: dict[str, Any], key: bytes) -> str:
    """The `signature` value for a policy document (without its own signature field)."""
    body = {k: v for k, v in document.items() if k != "signature"}
    digest = hmac.new(key, canonical_json(body), hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def sign(policy: Policy, key: bytes) -> Policy:
    """A copy of `policy` carrying its signature."""
    return policy.model_copy(update={"signature": signature_of(_unsigned_document(policy), key)})


def verify(document: dict[str, Any], key: bytes) -> bool:
    """Whether a received policy document (parsed JSON, as sent) is signed with `key`.

    Verification works on the document as received, not on a re-serialised
    model, so a field this version does not know still counts.
    """
    signature = document.get("signature")
    if not isinstance(signature, str):
        return False
    try:
        expected = signature_of(document, key)
    except (TypeError, ValueError):
        # NaN, Infinity or a non-JSON value: nothing a signer could have produced.
        return False
    # As bytes: compare_digest refuses str holding non-ASCII characters.
    return hmac.compare_digest(signature.encode(), expected.encode())
