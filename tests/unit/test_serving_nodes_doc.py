"""docs/serving-nodes.md stays true: its links, its test vectors, the engine fields it names."""

from __future__ import annotations

import json
import re
from pathlib import Path

from example_scripts import load_example

from stopbandit.policies.sampling import draw_index, request_uniform
from stopbandit.policies.signing import canonical_json, verify
from stopbandit.streams.events import Policy

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "serving-nodes.md"
FENCED_JSON = re.compile(r"^```json\n(.*?)\n```$", re.MULTILINE | re.DOTALL)


def test_links_resolve_inside_the_repository():
    """Every relative link of the guide names a file of the repository, none the shared/ folder."""
    text = GUIDE.read_text()
    assert "shared/" not in text
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert "../examples/openai_budget_node.py" in targets
    for target in targets:
        if "://" not in target:
            path = (GUIDE.parent / target).resolve()
            assert path.is_relative_to(ROOT), target
            assert path.exists(), target


def test_the_draw_vectors_are_the_sdks():
    """The u values and arm indices the guide gives are what policies.sampling computes."""
    text = GUIDE.read_text()
    for request_id, index in (("9f2c-77", 0), ("req-1", 1)):
        assert draw_index([0.1, 0.9, 0.0], request_id) == index
        expected = f"`{request_id}` gives u = {request_uniform(request_id)!r}"
        assert expected in " ".join(text.split()), expected
        assert f"index {index}" in text


def test_the_signature_vector_verifies_and_its_canonical_form_is_the_sdks():
    """The signed policy verifies with `test-key`, and the canonical bytes shown are JCS's."""
    signed_text, canonical_text = FENCED_JSON.findall(GUIDE.read_text())
    document = json.loads(signed_text)
    assert verify(document, b"test-key")
    assert not verify(document, b"other-key")
    Policy.model_validate(document)
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    assert canonical_json(unsigned).decode() == canonical_text


def test_the_engine_fields_named_are_the_ones_the_example_sends():
    """The budget fields the guide names for vLLM and SGLang are those of request_body."""
    example = load_example("openai_budget_node")
    text = GUIDE.read_text()
    vllm = example.request_body("vllm", "m", [], 1024, 64)
    sglang = example.request_body("sglang", "m", [], 1024, 64)
    assert vllm["thinking_token_budget"] == 1024
    assert sglang["custom_params"] == {"thinking_budget": 1024}
    assert vllm["max_tokens"] == sglang["max_tokens"] == 1024 + 64
    assert "`thinking_token_budget`" in text
    assert '`custom_params: {"thinking_budget": N}`' in text
