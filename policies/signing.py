"""HMAC-SHA256 signatures of policies (docs/wire-contract.md, revision 1.1).

The signature covers the RFC 8785 (JSON Canonicalization Scheme) form of the
policy without its `signature` field, as UTF-8 bytes. RFC 8785 fixes the key
order (UTF-16 code units) and ECMAScript's number form (`1` not `1.0`, `1e-7`,
`1e+21`), so a node in Go, Java or Node.js rebuilds the same bytes with its
own JCS library; the 1.0 form, Python's sorted `json.dumps`, could only be
checked from Python. A node holding the key rejects an unsigned or badly
signed policy.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

import rfc8785

if TYPE_CHECKING:
    from stopbandit.streams.events import Policy

SIGNATURE_PREFIX = "hmac-sha256:"
# Integers a double holds exactly (I-JSON, RFC 7493): what every JCS library reads as is.
_SAFE_INT = 2**53 - 1


def _as_jcs_numbers(value: Any) -> Any:  # noqa: ANN401 - any parsed JSON value
    """`value` with integers beyond a double's exact range as the doubles JCS reads them as.

    JCS numbers are IEEE doubles: Node.js parses `100000000000000000000`
    (how JCS writes the float 1e20) as that double, while Python's json makes
    it an int that `rfc8785` refuses. Reading it as a float gives both
    languages the same number and the same bytes.
    """
    if isinstance(value, dict):
        return {k: _as_jcs_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_jcs_numbers(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _SAFE_INT:
        return float(value)  # OverflowError past 1.8e308: no double, nothing to sign
    return value


def canonical_json(document: dict[str, Any]) -> bytes:
    """The RFC 8785 form of `document`: the bytes a signature covers.

    Raises:
        ValueError: a value JCS cannot write (NaN, Infinity, an integer past
            a double's range, a string with a lone surrogate).
        TypeError: a value that is no JSON at all.
    """
    try:
        return rfc8785.dumps(_as_jcs_numbers(document))
    except OverflowError as error:
        raise ValueError(f"a number past a double's range ({error})") from None


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
    model, so a field this version does not know still counts, and the JSON
    layout it arrived in (spacing, key order, `1.0` or `1`) does not matter.
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
