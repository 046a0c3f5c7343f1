"""The serving node's side of the loop: hold the newest policies, draw thresholds from them.

`PolicyClient` is pure: messages of the policies topic, documents from the
daemon's `/policies` endpoint or a policies file go in through `offer` or
`offer_document`; `choose` comes out. The Kafka, HTTP and file edges live in
`policies.sources` and only feed it.

Folding rule (docs/wire-contract.md): per segment, a policy replaces the held one
only if its version is higher, so reading the topic from the beginning gives
the same state whether or not the broker has compacted it, and duplicates or
late, older versions change nothing. A tombstone (a key with no value)
removes the segment but keeps its version as a floor, so an older policy
arriving after it cannot bring the segment back; a client with a key ignores
tombstones, since a key-only message proves nothing about who sent it.

Before a policy is held it passes `policies.admission`: no repeated JSON key,
a version the node's clock allows, and (signed) not older than the freshness
window; without a key the client warns once, at start, that anyone who can
write the policies topic sets its policies.

Concurrency: writers build a new read-only table under a lock and swap one
reference; `choose` reads that reference once and takes no lock, so it
always sees one consistent table.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import ValidationError

from stopbandit.policies.admission import (
    DEFAULT_MAX_POLICY_AGE_S,
    DEFAULT_MAX_VERSION_AHEAD_S,
    duplicate_key,
    hold_problem,
    parse_json,
    version_ceiling,
)
from stopbandit.policies.sampling import serve_index, served_pmf
from stopbandit.policies.signing import verify
from stopbandit.streams.events import FALLBACK_SEGMENT, Decision, Policy

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from stopbandit.streams.events import ContextValue

log = structlog.get_logger(__name__)

__all__ = [
    "DEFAULT_MAX_POLICY_AGE_S",
    "DEFAULT_MAX_VERSION_AHEAD_S",
    "Choice",
    "PolicyClient",
    "PolicyRejectedError",
    "parse_json",
    "parse_policy",
    "version_ceiling",
]

MAX_POLICY_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Choice:
    """The threshold drawn for one request, with what its decision event must log.

    Attributes:
        threshold: the early-stopping threshold to use.
        probability: the probability it was drawn with (the propensity), in (0, 1].
        policy_version: the version of the policy drawn from; 0 when the node
            knew no policy and used its configured fallback.
        pmf: the whole distribution drawn from, as (threshold, probability)
            pairs; None for the configured fallback.
    """

    threshold: float
    probability: float
    policy_version: int
    pmf: tuple[tuple[float, float], ...] | None

    def decision(
        self,
        request_id: str,
        segment: str,
        ts: float,
        context: Mapping[str, ContextValue] | None = None,
    ) -> Decision:
        """The decision event that logs this choice (docs/wire-contract.md)."""
        return Decision(
            v=1,
            request_id=request_id,
            ts=ts,
            segment=segment,
            context=dict(context or {}),
            threshold=self.threshold,
            probability=self.probability,
            policy_version=self.policy_version,
            pmf=list(self.pmf) if self.pmf is not None else None,
        )


@dataclass(frozen=True, slots=True)
class _Entry:
    """A held policy with what `choose` needs precomputed.

    `pmf` is the policy's own (the draw outside the control group); `served` and
    `pairs` are what the node's whole rule serves from (the control arm's share
    mixed in: `policies.sampling.served_pmf`), whose entries decisions log.
    """

    policy: Policy
    pmf: tuple[float, ...]
    pairs: tuple[tuple[float, float], ...]
    served: tuple[float, ...] = ()
    control: tuple[int, float] | None = None

    @classmethod
    def of(cls, policy: Policy) -> _Entry:
        """The entry of a valid policy."""
        pmf = tuple(policy.pmf)
        control = None
        if policy.control is not None and policy.control.fraction > 0.0:
            index = next(
                k for k, arm in enumerate(policy.arms) if math.isclose(arm, policy.control.arm)
            )
            control = (index, policy.control.fraction)
        served = tuple(served_pmf(pmf, *control)) if control is not None else pmf
        pairs = tuple(zip(policy.arms, served, strict=True))
        return cls(policy=policy, pmf=pmf, pairs=pairs, served=served, control=control)


@dataclass(frozen=True, slots=True)
class _Table:
    """One immutable generation of the client's state."""

    entries: Mapping[str, _Entry]
    versions: Mapping[str, int]


class PolicyRejectedError(ValueError):
    """A policy message that the client will not hold.

    Attributes:
        kind: a short label for counting (`json`, `schema`, `signature`, `key`, `size`,
            `version`, `stale`).
        reason: what is wrong, naming the field.
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def parse_policy(
    document: Any,  # noqa: ANN401 - parsed JSON of any shape, checked here
    hmac_key: bytes | None,
) -> Policy:
    """Check a received policy document: one meaning, then signature (as sent), then schema.

    Raises:
        PolicyRejectedError: a repeated key (`parse_json`'s marker), not an object,
            unsigned or badly signed while a key is configured, or breaking the
            contract (pmf, arms within the knob's range, greedy, ...).
    """
    repeated = duplicate_key(document)
    if repeated is not None:
        raise PolicyRejectedError("json", repeated)
    if not isinstance(document, dict):
        raise PolicyRejectedError("json", "policy: must be a JSON object")
    if hmac_key is not None and not verify(document, hmac_key):
        reason = "signature: missing" if "signature" not in document else "signature: mismatch"
        raise PolicyRejectedError("signature", reason)
    try:
        return Policy.model_validate(document)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "policy"
        raise PolicyRejectedError("schema", f"{where}: {first['msg']}") from None


class PolicyClient:
    """The policies a serving node holds, and the draw of a threshold from them.

    Args:
        fallback_threshold: the threshold used, with probability 1 and version 0,
            when neither the request's segment nor `*` has a policy.
        hmac_key: the shared signing key; when set, unsigned or badly signed
            policies and all tombstones are rejected. Without it the client
            warns at start that policies are unauthenticated.
        max_policy_age_s: with a key, a policy issued longer ago than this (by
            the node's clock) is not taken; None takes any age.
        max_version_ahead_s: a version more than this many seconds of the
            daemon's microsecond versions past the node's clock is not taken.
        clock: the node's wall clock, in seconds since the epoch.

    Example:
        >>> client = PolicyClient(fallback_threshold=1.0)
        >>> client.choose("req-1", "math/gsm8k").threshold
        1.0
    """

    def __init__(
        self,
        *,
        fallback_threshold: float,
        hmac_key: bytes | None = None,
        max_policy_age_s: float | None = DEFAULT_MAX_POLICY_AGE_S,
        max_version_ahead_s: float = DEFAULT_MAX_VERSION_AHEAD_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not math.isfinite(fallback_threshold):
            raise ValueError("fallback_threshold: must be a finite number")
        if hmac_key is not None and not hmac_key:
            raise ValueError("hmac_key: must not be empty (None turns signatures off)")
        if max_policy_age_s is not None and not (
            math.isfinite(max_policy_age_s) and max_policy_age_s > 0
        ):
            raise ValueError(f"max_policy_age_s: must be above 0 s or None, got {max_policy_age_s}")
        if not (math.isfinite(max_version_ahead_s) and max_version_ahead_s >= 0):
            raise ValueError(f"max_version_ahead_s: must be >= 0 s, got {max_version_ahead_s}")
        self._fallback = Choice(float(fallback_threshold), 1.0, 0, None)
        self._hmac_key = hmac_key
        self._max_policy_age_s = max_policy_age_s
        self._max_version_ahead_s = max_version_ahead_s
        self._clock = clock
        if hmac_key is None:
            log.warning(
                "policy_client.unauthenticated",
                reason="no hmac_key: whoever writes the policies topic sets this node's policies",
            )
        self._table = _Table(MappingProxyType({}), MappingProxyType({}))
        self._write_lock = threading.Lock()
        self._updated = threading.Condition(self._write_lock)
        self.rejected: Counter[str] = Counter()
        """Policies refused, by reason kind."""
        self.ignored = 0
        """Valid policies not newer than the version held for their segment."""

    # --- the hot path -----------------------------------------------------------------

    def choose(
        self,
        request_id: str,
        segment: str,
        context: Mapping[str, ContextValue] | None = None,  # noqa: ARG002
    ) -> Choice:
        """Draw the threshold for one request (no I/O, no lock).

        The draw is `policies.sampling.serve_index` on the segment's pmf, seeded
        by `request_id`: the same request and policy always give the same
        threshold; a request in the policy's control group gets its control arm,
        with the probability of the whole rule logged. An unknown segment uses
        the `*` policy; with neither, the configured fallback threshold
        (probability 1, version 0).

        Args:
            request_id: the request's unique id (the join key of its events).
            segment: the request's segment key.
            context: the request's features. Policies are per segment today, so
                the draw does not read it; it is part of the signature so that
                contextual policies can come without changing callers.

        Returns:
            The choice and what the decision event must log.
        """
        entries = self._table.entries  # one read: a consistent generation
        entry = entries.get(segment) or entries.get(FALLBACK_SEGMENT)
        if entry is None:
            return self._fallback
        k = serve_index(entry.pmf, request_id, entry.control)
        return Choice(entry.policy.arms[k], entry.served[k], entry.policy.version, entry.pairs)

    # --- reading state ----------------------------------------------------------------

    @property
    def policies(self) -> Mapping[str, Policy]:
        """The policies held now, by segment (a read-only snapshot)."""
        return MappingProxyType({s: e.policy for s, e in self._table.entries.items()})

    def version(self, segment: str) -> int:
        """The highest version seen for `segment` (kept after a tombstone), 0 if none."""
        return self._table.versions.get(segment, 0)

    @property
    def max_version(self) -> int:
        """The highest version seen for any segment, 0 if none."""
        return max(self._table.versions.values(), default=0)

    def wait_for(self, version: int, timeout_s: float) -> bool:
        """Block until some segment holds a policy of at least `version`.

        Returns:
            Whether it happened within `timeout_s`.
        """
        with self._updated:
            return self._updated.wait_for(lambda: self.max_version >= version, timeout=timeout_s)

    def wait_covers(self, versions: Mapping[str, int], timeout_s: float) -> bool:
        """Block until, for every segment given, a version at least as high has been seen.

        A controller that knows what it published (segment -> version) can use
        this to know a node has received all of it.

        Returns:
            Whether that happened within `timeout_s`.
        """

        def covered() -> bool:
            seen = self._table.versions
            return all(seen.get(segment, 0) >= v for segment, v in versions.items())

        with self._updated:
            return self._updated.wait_for(covered, timeout=timeout_s)

    # --- updates ----------------------------------------------------------------------

    def offer(self, key: bytes | None, value: bytes | None) -> bool:
        """Apply one message of the policies topic.

        A `None` value is a tombstone: the key's segment is removed, unless the
        client has a key (a tombstone carries no signature, so it is refused).
        Invalid messages are counted in `rejected` and logged, never raised:
        bad upstream data must not stop a serving node.

        Returns:
            Whether the held policies changed.
        """
        if value is None:
            return self._tombstone(key)
        if len(value) > MAX_POLICY_BYTES:
            self._reject("size", f"value: {len(value)} bytes, more than {MAX_POLICY_BYTES}")
            return False
        try:
            document = parse_json(value)
        except ValueError as error:
            self._reject("json", f"value: not UTF-8 JSON ({error})")
            return False
        if (
            key is not None
            and isinstance(document, dict)
            and document.get("segment") != key.decode("utf-8", errors="replace")
        ):
            self._reject("key", "segment: does not match the message key")
            return False
        return self.offer_document(document)

    def offer_document(self, document: Any) -> bool:  # noqa: ANN401 - parsed JSON, checked
        """Apply one parsed policy document (from HTTP or a file).

        Returns:
            Whether the held policies changed.
        """
        try:
            policy = parse_policy(document, self._hmac_key)
        except PolicyRejectedError as error:
            self._reject(error.kind, error.reason)
            return False
        problem = hold_problem(
            policy,
            self._clock(),
            signed=self._hmac_key is not None,
            max_version_ahead_s=self._max_version_ahead_s,
            max_policy_age_s=self._max_policy_age_s,
        )
        if problem is not None:
            self._reject(*problem)
            return False
        return self.apply(policy)

    def apply(self, policy: Policy) -> bool:
        """Hold `policy` if it is newer than what is held for its segment.

        The policy is taken as already verified; `offer` and `offer_document`
        are the entry points for received data.

        Returns:
            Whether it was newer (and is now held).
        """
        entry = _Entry.of(policy)
        with self._updated:
            table = self._table
            held = table.versions.get(policy.segment)
            if held is not None and policy.version <= held:
                self.ignored += 1
                log.debug(
                    "policy.ignored", segment=policy.segment, version=policy.version, held=held
                )
                return False
            entries = {**table.entries, policy.segment: entry}
            versions = {**table.versions, policy.segment: policy.version}
            self._table = _Table(MappingProxyType(entries), MappingProxyType(versions))
            self._updated.notify_all()
        log.debug("policy.held", segment=policy.segment, version=policy.version)
        return True

    def remove(self, segment: str) -> bool:
        """Drop the segment's policy (a tombstone); its version stays as a floor.

        Returns:
            Whether a policy was held for it.
        """
        with self._updated:
            table = self._table
            if segment not in table.entries:
                return False
            entries = {s: e for s, e in table.entries.items() if s != segment}
            self._table = _Table(MappingProxyType(entries), table.versions)
            self._updated.notify_all()
        log.info("policy.removed", segment=segment)
        return True

    def _tombstone(self, key: bytes | None) -> bool:
        if key is None:
            self._reject("key", "tombstone: no key")
            return False
        if self._hmac_key is not None:
            # A key-only message carries no signature: anyone could have sent it.
            self._reject("signature", "tombstone: unsigned; a client with a key keeps the policy")
            return False
        return self.remove(key.decode("utf-8", errors="replace"))

    def _reject(self, kind: str, reason: str) -> None:
        with self._write_lock:
            self.rejected[kind] += 1
        log.warning("policy.rejected", kind=kind, reason=reason)
