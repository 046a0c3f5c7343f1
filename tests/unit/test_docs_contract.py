"""The shipped wire contract (docs/wire-contract.md) stays in step with SCHEMA.md and the code.

SCHEMA.md, the source of truth, lives in a shared/ folder beside the repository
where the project is developed; a user's clone has none, so the checks against
it skip there. The checks against the wire models and the shipped docs run
everywhere.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from stopbandit.streams.events import Decision, Outcome, Policy

if TYPE_CHECKING:
    from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "docs" / "wire-contract.md"
DESIGN = ROOT / "docs" / "design.md"
SCHEMA = ROOT.parent / "shared" / "SCHEMA.md"
# Where SCHEMA.md names the shared folder's scenarios, the contract names the shipped ones.
SHARED_PREFIX = "shared/"
SHIPPED_SCENARIOS = "controller/sim/scenarios/"
FENCED_BLOCK = re.compile(r"^```.*?^```$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
HEADING = re.compile(r"^#{1,6} .+$", re.MULTILINE)
REVISION = re.compile(r"^# .*\bversion (\d+) \(revision (\d+(?:\.\d+)*)\)", re.MULTILINE)
TABLE_SEPARATOR = re.compile(r"^\|(?:\s*:?-+:?\s*\|)+$")
CELL_BORDER = re.compile(r"(?<!\\)\|")

needs_schema = pytest.mark.skipif(
    not SCHEMA.exists(),
    reason=f"{SCHEMA} is absent: only the project's own checkout has the shared/ folder",
)


def _normalised(text: str) -> str:
    return " ".join(text.split())


def _table_rows(text: str) -> list[tuple[str, ...]]:
    """Every row of every markdown table in `text`, headers included, cells normalised."""
    rows = []
    for line in FENCED_BLOCK.sub("", text).splitlines():
        stripped = line.strip()
        if not stripped.startswith("|") or TABLE_SEPARATOR.match(stripped):
            continue
        cells = CELL_BORDER.split(stripped.strip("|"))
        rows.append(tuple(_normalised(cell) for cell in cells))
    return rows


def _field_names(text: str) -> set[str]:
    """The names in the first column of every table row (`type, v` names two)."""
    return {
        name.strip().strip("`").strip()
        for row in _table_rows(text)
        for name in row[0].split(",")
        if name.strip()
    }


def _code_spans(text: str) -> list[str]:
    return CODE_SPAN.findall(FENCED_BLOCK.sub("", text))


def _section(text: str, title: str) -> str:
    """The level-2 section of `text` whose heading starts with `title`, subsections included."""
    match = re.search(rf"^## {re.escape(title)}.*?(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"no '## {title}' section in {CONTRACT.name}"
    return match.group()


def test_table_rows_parse_cells_and_skip_separators():
    """The table reader returns normalised cells, splits names on commas and skips code blocks."""
    text = "| field | rule |\n| --- | --- |\n| `a`, b |  one\ttwo |\n```\n| c | d |\n```\n"
    assert _table_rows(text) == [("field", "rule"), ("`a`, b", "one two")]
    assert _field_names(text) == {"field", "a", "b"}


@needs_schema
def test_contract_has_the_schema_revision():
    """The contract's title names the same version and revision as SCHEMA.md's."""
    schema_revision = REVISION.search(SCHEMA.read_text())
    contract_revision = REVISION.search(CONTRACT.read_text())
    assert schema_revision, f"no 'version N (revision X)' title in {SCHEMA}"
    assert contract_revision, f"no 'version N (revision X)' title in {CONTRACT.name}"
    assert contract_revision.group() == schema_revision.group(), "the revisions differ"


@needs_schema
def test_contract_names_every_field_of_the_schema_tables():
    """Each first-column name of SCHEMA.md's tables is a first-column name of the contract's."""
    schema_names = _field_names(SCHEMA.read_text())
    assert {"request_id", "counterfactual", "knob", "signature"} <= schema_names
    missing = schema_names - _field_names(CONTRACT.read_text())
    assert not missing, f"fields of SCHEMA.md missing from {CONTRACT.name}: {sorted(missing)}"


@needs_schema
def test_contract_states_every_rule_of_the_schema_tables():
    """Each table row of SCHEMA.md, its rule text included, is a row of the contract."""
    schema_rows = _table_rows(SCHEMA.read_text())
    assert len(schema_rows) >= 30
    contract_rows = set(_table_rows(CONTRACT.read_text()))
    missing = [" | ".join(row) for row in schema_rows if row not in contract_rows]
    assert not missing, f"rows of SCHEMA.md missing from {CONTRACT.name}:\n" + "\n".join(missing)


@needs_schema
def test_contract_has_every_code_span_of_the_schema():
    """Each backticked identifier of SCHEMA.md but shared/ paths is backticked in the contract."""
    spans = _code_spans(SCHEMA.read_text())
    contract_spans = set(_code_spans(CONTRACT.read_text()))
    missing = sorted(
        {span for span in spans if not span.startswith(SHARED_PREFIX)} - contract_spans
    )
    assert not missing, f"identifiers of SCHEMA.md missing from {CONTRACT.name}: {missing}"
    if any(span.startswith(SHARED_PREFIX + "scenarios") for span in spans):
        assert SHIPPED_SCENARIOS in contract_spans


@needs_schema
def test_contract_has_every_section_and_example_of_the_schema():
    """Each heading and each fenced example of SCHEMA.md appears in the contract unchanged."""
    schema = SCHEMA.read_text()
    contract = CONTRACT.read_text()
    missing_headings = set(HEADING.findall(FENCED_BLOCK.sub("", schema))) - set(
        HEADING.findall(FENCED_BLOCK.sub("", contract))
    )
    assert not missing_headings, f"sections missing from {CONTRACT.name}: {missing_headings}"
    missing_examples = [block for block in FENCED_BLOCK.findall(schema) if block not in contract]
    assert not missing_examples, f"examples missing from {CONTRACT.name}: {missing_examples}"


@pytest.mark.parametrize("path", [CONTRACT, DESIGN], ids=lambda path: path.name)
def test_shipped_docs_do_not_point_outside_the_repository(path: Path):
    """The shipped docs name no shared/ folder, and their relative links resolve in the repo."""
    text = path.read_text()
    assert SHARED_PREFIX not in text, f"{path.name} points at the shared/ folder"
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (path.parent / target).resolve().is_relative_to(ROOT), target
            assert (path.parent / target).exists(), target


def test_shipped_scenarios_exist():
    """The scenario folder the contract names holds scenario files."""
    assert f"`{SHIPPED_SCENARIOS}`" in CONTRACT.read_text()
    assert sorted((ROOT / SHIPPED_SCENARIOS).glob("*.yaml"))


@pytest.mark.parametrize(
    ("model", "section"),
    [(Decision, "Decision"), (Outcome, "Outcome"), (Policy, "Policy")],
    ids=["decision", "outcome", "policy"],
)
def test_contract_names_every_field_of_the_wire_models(model: type[BaseModel], section: str):
    """Each field of the wire model is a table field or an example's key in its contract section."""
    text = _section(CONTRACT.read_text(), section)
    documented = _field_names(text) | set(re.findall(r'"([a-z_]+)":', text))
    # Fields excluded from serialisation are the controller's own notes, never on the wire.
    wire = {name for name, info in model.model_fields.items() if not info.exclude}
    missing = sorted(wire - documented)
    assert not missing, f"{model.__name__} fields missing from '## {section}': {missing}"


# The contract may carry what SCHEMA.md lacks only where a node that ignores it stays correct:
# an optional field whose rule says so first (`control`, for one).
ADDITIVE_RULE = re.compile(r"^optional \(additive\b")


@needs_schema
def test_every_field_of_the_contract_is_in_the_schema_or_marked_additive():
    """The reverse direction: no field name of the contract's tables is unknown to SCHEMA.md.

    A name SCHEMA.md's tables lack is allowed only in a row whose rule starts
    with "optional (additive": a node written from SCHEMA.md alone ignores it.
    """
    schema_names = _field_names(SCHEMA.read_text())
    extra = {
        name
        for row in _table_rows(CONTRACT.read_text())
        if not any(ADDITIVE_RULE.match(cell) for cell in row[1:])
        for name in _field_names(" | ".join(("", *row, "")))
    } - schema_names
    assert not extra, f"fields of {CONTRACT.name} that SCHEMA.md does not have: {sorted(extra)}"


@needs_schema
def test_every_rule_of_the_contract_is_a_schema_rule_or_marked_additive():
    """Each table row of the contract is a row of SCHEMA.md, or an additive optional field."""
    schema_rows = set(_table_rows(SCHEMA.read_text()))
    changed = [
        " | ".join(row)
        for row in _table_rows(CONTRACT.read_text())
        if row not in schema_rows and not any(ADDITIVE_RULE.match(cell) for cell in row[1:])
    ]
    assert not changed, f"rows of {CONTRACT.name} not in SCHEMA.md:\n" + "\n".join(changed)


def test_the_additive_marker_is_read_from_the_rule_cell():
    """The marker must open a rule cell: a field merely mentioning 'additive' is not one."""
    text = (
        "| field | rule |\n| --- | --- |\n"
        "| control | optional (additive; ignored by old nodes): ... |\n"
        "| other | required; not additive |\n"
    )
    marked = [row[0] for row in _table_rows(text) if any(ADDITIVE_RULE.match(c) for c in row[1:])]
    assert marked == ["control"]
