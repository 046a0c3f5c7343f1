"""The serving node's control group: members at the control arm, every decision's probability."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from stopbandit.controller.savings import CONTROL, CONTROLLED, group_of
from stopbandit.policies.client import PolicyClient
from stopbandit.policies.sampling import draw_index, in_control, served_pmf
from stopbandit.streams.codec import decode, encode
from stopbandit.streams.events import ControlGroup, Outcome, Policy
from stopbandit.streams.join import Interaction

ARMS = [0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0]
PMF = [0.0, 0.0, 0.1, 0.2, 0.5, 0.2, 0.0]
CONTROL_GROUP = ControlGroup(fraction=0.1, arm=1.0)


def _policy(control: ControlGroup | None = CONTROL_GROUP) -> Policy:
    return Policy(
        segment="a", version=4, issued_at=1.0, arms=ARMS, pmf=PMF, greedy=0.95, control=control
    )


def test_members_get_the_control_arm_and_everyone_logs_the_whole_rule() -> None:
    """Members of the group are served at its arm; the others draw as without it.

    Every choice logs the served pmf (the control share mixed in) and the
    probability of its threshold under it; the decision passes the codec and
    the controller classifies it as the node did.
    """
    client = PolicyClient(fallback_threshold=1.0)
    client.apply(_policy())
    served = served_pmf(PMF, ARMS.index(1.0), 0.1)
    groups: Counter[str | None] = Counter()
    for i in range(5000):
        rid = f"req-{i}"
        choice = client.choose(rid, "a")
        expected = 1.0 if in_control(rid, 0.1) else ARMS[draw_index(PMF, rid)]
        assert choice.threshold == expected
        k = ARMS.index(choice.threshold)
        assert choice.probability == pytest.approx(served[k])
        assert choice.pmf == tuple(zip(ARMS, served, strict=True))
        decision = choice.decision(rid, "a", 10.0)
        assert decode(b"a", encode(decision)) == decision
        outcome = Outcome(v=1, request_id=rid, ts=11.0, segment="a", em=1.0, tokens=5)
        groups[group_of(Interaction.of(decision, outcome), 0.1, 1.0)] += 1
    assert groups[None] == 0
    assert abs(groups[CONTROL] / 5000 - 0.1) < 0.02
    assert groups[CONTROL] + groups[CONTROLLED] == 5000


def test_without_a_control_group_choices_are_unchanged() -> None:
    """No `control` (or fraction 0): the policy's own pmf, as before."""
    for control in (None, ControlGroup(fraction=0.0, arm=1.0)):
        client = PolicyClient(fallback_threshold=1.0)
        client.apply(_policy(control))
        for i in range(200):
            choice = client.choose(f"r{i}", "a")
            k = draw_index(PMF, f"r{i}")
            assert (choice.threshold, choice.probability) == (ARMS[k], PMF[k])


def test_a_control_arm_outside_the_arms_is_rejected() -> None:
    """The policy model refuses a control arm that is not one of its arms, naming the field."""
    client = PolicyClient(fallback_threshold=1.0)
    document = _policy().model_dump(mode="json", exclude_none=True)
    document["control"] = {"fraction": 0.1, "arm": 0.42}
    assert not client.offer_document(document)
    document["control"] = {"fraction": 0.9, "arm": 1.0}
    assert not client.offer_document(document)
    assert client.rejected["schema"] == 2


def test_the_contracts_worked_example() -> None:
    """docs/wire-contract.md's control-group example: the probabilities it states."""
    text = (Path(__file__).parents[3] / "docs" / "wire-contract.md").read_text()
    block = next(b for b in re.findall(r"```json\n(.*?)```", text, re.DOTALL) if '"control"' in b)
    policy = Policy.model_validate_json(block)
    client = PolicyClient(fallback_threshold=1.0)
    client.apply(policy)
    member = next(f"m-{i}" for i in range(1000) if in_control(f"m-{i}", 0.02))
    outsider = next(
        f"o-{i}"
        for i in range(1000)
        if not in_control(f"o-{i}", 0.02) and draw_index(policy.pmf, f"o-{i}") == 1
    )
    chosen = client.choose(outsider, policy.segment)
    assert (chosen.threshold, chosen.probability) == (0.95, pytest.approx(0.882))
    assert chosen.pmf is not None
    assert [p for _, p in chosen.pmf] == pytest.approx([0.098, 0.882, 0.02])
    assert (
        client.choose(member, policy.segment).threshold,
        client.choose(member, policy.segment).probability,
    ) == (1.0, pytest.approx(0.02))
