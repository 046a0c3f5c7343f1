"""PolicyClient folding: the order a log is read in never changes what the client holds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stopbandit.policies.client import PolicyClient
from stopbandit.streams.events import Policy

ARMS = [0.5, 0.9, 1.0]

# (segment, version) pairs of policy messages.
records = st.lists(
    st.tuples(st.sampled_from(["a", "b", "*"]), st.integers(min_value=1, max_value=30)),
    min_size=1,
    max_size=40,
)


def _value(segment: str, version: int) -> bytes:
    pmf = [0.0, 0.0, 0.0]
    pmf[version % 3] = 1.0
    policy = Policy(
        segment=segment,
        version=version,
        issued_at=0.0,
        arms=ARMS,
        pmf=pmf,
        greedy=ARMS[version % 3],
    )
    return policy.model_dump_json().encode()


@given(records, st.randoms(use_true_random=False))
def test_any_order_of_a_log_folds_to_the_newest_version_per_segment(log, random):
    """Duplicates, reordering and replays: each segment ends at its highest version."""
    shuffled = list(log)
    random.shuffle(shuffled)
    client = PolicyClient(fallback_threshold=1.0)
    for segment, version in shuffled + log:  # read twice, as after a restart from the beginning
        client.offer(segment.encode(), _value(segment, version))
    expected: dict[str, int] = {}
    for segment, version in log:
        expected[segment] = max(version, expected.get(segment, 0))
    assert {s: p.version for s, p in client.policies.items()} == expected
    for segment, version in expected.items():
        assert client.choose("r", segment).threshold == ARMS[version % 3]
