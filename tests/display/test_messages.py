"""The typed page messages, their committed JSON schema and docs/console.md's tables agree.

The pages load ``static/schema.json`` and check every property they read against it
(``static/schema.js``; proven in the browser by test_browser.py), so the file must be the
models' schema, and every key the models send must be documented.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rt_recon.display.messages import (
    MESSAGES,
    REGENERATE,
    SCHEMA_PATH,
    NodeCounters,
    page_schema,
    schema_text,
    write_schema,
)
from rt_recon.protocol import counter_names
from tests.protocol.test_doc import documented_tables

DOC = Path(__file__).resolve().parents[2] / "docs" / "console.md"


def _page_models() -> dict[str, type]:
    """Every model a page message is built of (the messages and their parts), by name."""
    found: dict[str, type] = {}

    def visit(model: type) -> None:
        if model.__name__ in found:
            return
        found[model.__name__] = model
        for field in model.model_fields.values():
            for arg in _types_in(field.annotation):
                if isinstance(arg, type) and hasattr(arg, "model_fields"):
                    visit(arg)

    for model in MESSAGES.values():
        visit(model)
    return found


def _types_in(annotation) -> list:
    args = getattr(annotation, "__args__", None)
    return [annotation] if not args else [t for a in args for t in _types_in(a)]


def test_the_committed_schema_is_the_models_schema():
    assert SCHEMA_PATH.read_text() == schema_text(), (
        f"{SCHEMA_PATH} is stale: the page messages changed. Regenerate it with `{REGENERATE}` "
        "and commit it"
    )


def test_a_stale_schema_file_is_seen(tmp_path):
    path = write_schema(tmp_path / "schema.json")
    assert path.read_text() == schema_text()
    path.write_text(path.read_text().replace('"lag_trs"', '"lag"', 1))
    assert path.read_text() != schema_text()


def test_the_schema_names_every_message_and_refers_only_to_its_own_definitions():
    schema = page_schema()
    assert set(schema["messages"]) == {
        "state", "waiting", "participant_picture", "console_picture",
        "present_design", "present_pong", "present_start", "present_off",
    }  # fmt: skip
    text = schema_text()
    for name in schema["$defs"]:
        assert f'"#/$defs/{name}"' in text
    assert "http://" not in text and "https://" not in text  # the pages load nothing else


def test_every_page_field_is_required_so_a_message_always_carries_every_key():
    for name, model in _page_models().items():
        if model.__module__ != "rt_recon.display.messages" or model is NodeCounters:
            continue  # the protocol's own types keep the wire's optional keys
        optional = [f for f, info in model.model_fields.items() if not info.is_required()]
        assert not optional, f"{name}: fields with a default would be sent missing: {optional}"


def test_node_counters_are_every_nodes_heartbeat_counters():
    every = {c for node in ("decoder", "renderer", "recorder") for c in counter_names(node)}
    assert set(NodeCounters.model_fields) == every


#: The models docs/console.md documents in tables marked ``<!-- fields: NAME -->``: every
#: model of the page messages but the nodes' counters (docs/protocol.md 3.3 has those).
DOCUMENTED = tuple(
    name
    for name, model in _page_models().items()
    if model.__module__ == "rt_recon.display.messages" and model is not NodeCounters
)


def test_every_page_message_table_in_the_doc_is_one_of_the_models():
    assert {"ConsoleStateMessage", "NodeView", "VolumeSourceView", "Alert"} <= set(DOCUMENTED)
    assert set(documented_tables(DOC.read_text())) == set(DOCUMENTED)


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_the_docs_table_lists_exactly_the_models_keys(name):
    documented = documented_tables(DOC.read_text())[name]
    model = _page_models()[name]
    expected = set(model.model_fields)
    if name == "ConsolePicture":  # documented as "the participant's keys, and ..."
        documented |= set(_page_models()["ParticipantPicture"].model_fields)
    assert not documented - expected, f"{name}: in docs/console.md but not in the model"
    assert not expected - documented, f"{name}: in the model but not in docs/console.md"
