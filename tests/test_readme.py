"""The README's first two commands are the ones newcomers and CI run."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    first_block = re.search(r"```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert first_block, "README must open with a code block of commands"
    return [line for line in first_block.group(1).splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_the_demo_and_the_test_command():
    demo, tests = _readme_commands()[:2]
    assert demo.endswith("rt-recon demo")
    assert "pytest" in tests
    assert "torch==2.13.0" in demo and "torch==2.13.0" in tests  # the CPU build, pinned


def test_ci_runs_the_readme_test_command_verbatim():
    _, tests = _readme_commands()[:2]
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert tests in ci
