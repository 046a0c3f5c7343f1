"""What a serving node agrees to hold, beyond the schema: rules that keep it from being locked out.

A node ignores every policy older than the one it holds, so one bad message
it accepts can shut out every real one after it. These rules come before a
policy is held (docs/wire-contract.md, "What a node holds"):

- One meaning per message: JSON with a key repeated in one object is
  refused. Python reads the last of the two, many parsers the first, so the
  same signed bytes would be two policies in two languages.
- A version the node's clock allows. The daemon's versions are microseconds
  of its wall clock (`controller/daemon/publish.py`, `version_floor`:
  `int(wall_ms) * 1000`, plus one per policy issued), so a version more than
  `max_version_ahead_s` of microseconds past the node's own clock was not
  issued yet by any controller; 2**63 - 1 is refused, and a forged version
  can shut an unkeyed node out for at most that long. Versions of a bare
  `PolicyBook` (1, 2, ...) are far below the ceiling.
- Freshness, where policies are signed: a signed policy issued more than
  `max_policy_age_s` before the node's clock is not taken on arrival (an
  old, validly signed policy replayed onto the compacted topic). Unsigned,
  `issued_at` proves nothing, so it is not judged. A policy already held
  is kept as it ages: a node cut off from its controller keeps serving.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stopbandit.streams.events import Policy

# The daemon's versions per second of wall clock: version_floor = int(wall_ms) * 1000.
VERSIONS_PER_S = 1_000_000
# How far ahead of the node's clock a version may be: clock skew between controller and
# node (NTP keeps it to milliseconds), and the daemon's counter running past its clock
# floor, which takes more than a million policies a second. Also the longest a forged
# version can shut out a node without a key.
DEFAULT_MAX_VERSION_AHEAD_S = 3_600.0
# How old a signed policy may be on arrival. The daemon issues every policy anew, with a
# new version and `issued_at`, every `publish.republish_interval_s` (300 s by default) even
# when unchanged, so a live controller's policies are minutes old; a week also covers a
# controller down over a long weekend. A node that gets no fresh policy uses `*` or its
# fallback, the reference arm, which costs tokens but never accuracy.
DEFAULT_MAX_POLICY_AGE_S = 7 * 86_400.0


@dataclass(frozen=True, slots=True)
class DuplicateKey:
    """Stands where `parse_json` read an object with `key` in it twice."""

    key: str


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any] | DuplicateKey:
    document = dict(pairs)
    if len(document) == len(pairs):
        return document
    seen: set[str] = set()
    for key, _ in pairs:  # pragma: no branch - a repeat exists, len() says so
        if key in seen:
            return DuplicateKey(key)
        seen.add(key)
    raise AssertionError  # pragma: no cover


def parse_json(data: bytes | str) -> Any:  # noqa: ANN401 - JSON of any shape
    """Parse UTF-8 JSON, leaving a `DuplicateKey` where an object repeats a key.

    The marker, not an error, so that in a list of policies (an HTTP answer,
    a file) only the policy holding it is refused; `duplicate_key` finds it.

    Raises:
        ValueError: not UTF-8, not JSON, or beyond what the parser reads
            (an integer of thousands of digits, nesting past the recursion limit).
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, object_pairs_hook=_unique_object)
    except RecursionError:
        raise ValueError("JSON nested too deeply to read") from None


def duplicate_key(document: Any, where: str = "") -> str | None:  # noqa: ANN401
    """The reason a parsed document is refused for a repeated key, or None if it has none."""
    if isinstance(document, DuplicateKey):
        return f"{where or 'policy'}: duplicate key {document.key!r}"
    if isinstance(document, dict):
        children = [(f"{where}.{key}" if where else key, v) for key, v in document.items()]
    elif isinstance(document, list):
        children = [(f"{where}.{k}" if where else str(k), v) for k, v in enumerate(document)]
    else:
        return None
    for path, child in children:
        found = duplicate_key(child, path)
        if found is not None:
            return found
    return None


def version_ceiling(now_s: float, ahead_s: float) -> int:
    """The highest version a node whose clock reads `now_s` holds."""
    return int((now_s + ahead_s) * VERSIONS_PER_S)


def hold_problem(
    policy: Policy,
    now_s: float,
    *,
    signed: bool,
    max_version_ahead_s: float,
    max_policy_age_s: float | None,
) -> tuple[str, str] | None:
    """Why a schema-valid policy is not held, as (kind, reason); None if it may be.

    Args:
        policy: the received policy (signature already checked if `signed`).
        now_s: the node's wall clock.
        signed: whether the node checks signatures (so `issued_at` is the controller's).
        max_version_ahead_s: see DEFAULT_MAX_VERSION_AHEAD_S.
        max_policy_age_s: see DEFAULT_MAX_POLICY_AGE_S; None takes any age.
    """
    ceiling = version_ceiling(now_s, max_version_ahead_s)
    if policy.version > ceiling:
        return (
            "version",
            (
                f"version: {policy.version} is ahead of this node's clock "
                f"(at most {ceiling}, {max_version_ahead_s:g} s past it in microseconds)"
            ),
        )
    if signed and max_policy_age_s is not None:
        age_s = now_s - policy.issued_at
        if age_s > max_policy_age_s:
            return (
                "stale",
                f"issued_at: {age_s:.0f} s old, more than max_policy_age_s={max_policy_age_s:g}",
            )
    return None
