"""docs/protocol.md's field tables and the protocol's types are held equal, both ways.

Each table in the doc that documents a type is preceded by ``<!-- fields: NAME -->``;
its first column lists the keys (in backticks; several may share a row). A key in the
doc that the type lacks, or a field of the type the doc leaves out, fails here.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from rt_recon.protocol import (
    SCHEMA_KEY,
    ControlReply,
    ControlRequest,
    DataQuality,
    FrameHeader,
    Interpolation,
    LatentsHeader,
    Marker,
    RunAlignment,
    Status,
    Times,
    TrialRef,
    counter_names,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def _wire_names(model) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


#: What each documented table must list: the keys on the wire.
EXPECTED: dict[str, set[str]] = {
    "Marker": _wire_names(Marker),
    "LatentsHeader": {SCHEMA_KEY, *_wire_names(LatentsHeader)},
    "TrialRef": _wire_names(TrialRef),
    "DataQuality": _wire_names(DataQuality),
    "FrameHeader": {SCHEMA_KEY, *_wire_names(FrameHeader)},
    "Interpolation": _wire_names(Interpolation),
    "Status": {SCHEMA_KEY, *(_wire_names(Status) - {"counters"})},  # counters lie flat
    "decoder counters": set(counter_names("decoder")),
    "RunAlignment": {f.name for f in fields(RunAlignment)},
    "renderer counters": set(counter_names("renderer")),
    "recorder counters": set(counter_names("recorder")),
    "Times": _wire_names(Times),
    "ControlRequest": {SCHEMA_KEY, *_wire_names(ControlRequest)},
    "ControlReply": {SCHEMA_KEY, *_wire_names(ControlReply)},
}


def documented_tables(text: str) -> dict[str, set[str]]:
    """``{name: keys in the first column}`` of every table marked ``<!-- fields: name -->``."""
    tables = {}
    for match in re.finditer(r"<!-- fields: (.+?) -->\n((?:\|.*\n)+)", text):
        rows = match.group(2).strip().splitlines()[2:]  # header and separator rows
        keys = set()
        for row in rows:
            first = row.split("|")[1]
            keys |= set(re.findall(r"`([^`]+)`", first))
        tables[match.group(1)] = keys
    return tables


def test_every_protocol_type_has_a_table_and_nothing_else_does():
    assert set(documented_tables(DOC.read_text())) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_docs_table_lists_exactly_the_types_fields(name):
    documented = documented_tables(DOC.read_text())[name]
    expected = EXPECTED[name]
    assert not documented - expected, f"{name}: in the doc but not in the type"
    assert not expected - documented, f"{name}: in the type but not in the doc"


def test_the_checker_sees_a_field_missing_from_the_doc():
    text = DOC.read_text().replace("| `spike` | bool | true when the despiker", "| spike |", 1)
    assert "spike" not in documented_tables(text)["LatentsHeader"]
