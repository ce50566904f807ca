"""Nodes start by name: one node -> subcommand table, checked against the real command line."""

from __future__ import annotations

import pytest

from rt_recon.nodes.supervisor import NODE_COMMANDS, Supervisor


def test_every_node_starts_its_own_subcommand(tmp_path):
    config_path = tmp_path / "session.json"  # never read: --help exits first
    with Supervisor(tmp_path / "logs") as supervisor:
        for node in NODE_COMMANDS:
            supervisor.start_node(node, config_path, "--help")
        codes = {name: c.process.wait(timeout=60) for name, c in supervisor.children.items()}
    assert codes == dict.fromkeys(NODE_COMMANDS, 0)
    for node, command in NODE_COMMANDS.items():
        log = supervisor.children[node].tail(200)
        assert f"usage: rt-recon {' '.join(command)} " in log, log


def test_an_unknown_node_names_the_known_ones(tmp_path):
    with (
        Supervisor(tmp_path / "logs") as supervisor,
        pytest.raises(ValueError, match="unknown node 'decodr': expected one of decoder, "),
    ):
        supervisor.start_node("decodr", tmp_path / "session.json")
    assert not supervisor.children
