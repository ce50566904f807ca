"""No pickle anywhere: no code path in the project can unpickle (or write pickles).

Pickle runs code while it loads, so a bundle, recording or message that
came from elsewhere could take over the machine. The project keeps arrays
in safetensors, HDF5 and raw little-endian buffers; this test reads every
source file and names each line that reaches for a pickle-based API.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("rt_recon", "simulators", "benchmarks", "training")

#: Modules that pickle (or run marshalled code) when they load.
PICKLING_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve",
                    "marshal", "pickletools"}  # fmt: skip
#: ``from X import name`` that is a pickle-based loader under another name.
PICKLING_NAMES = {
    ("torch", "load"),
    ("torch", "save"),
    ("numpy", "load"),
    ("pandas", "read_pickle"),
}

PATTERNS = [
    (re.compile(r"\bpickle\.[A-Za-z_]"), "pickle module call"),
    (re.compile(r"\b(cPickle|cloudpickle|dill|joblib)\b"), "pickle-based library"),
    (re.compile(r"allow_pickle\s*=\s*True"), "allow_pickle=True"),
    (re.compile(r"\btorch\.(jit\.)?load\s*\("), "torch.load (pickle; use safetensors)"),
    (re.compile(r"\btorch\.save\s*\("), "torch.save (pickle; use safetensors)"),
    (re.compile(r"\b(np|numpy)\.load\s*\("), "np.load (can unpickle; use safetensors/HDF5)"),
    (re.compile(r"\b(read|to)_pickle\s*\("), "pandas pickle I/O"),
    (re.compile(r"weights_only\s*=\s*False"), "weights_only=False (full unpickling)"),
    (re.compile(r"use_safetensors\s*=\s*False"), "use_safetensors=False (pickle weights)"),
]


def pickle_uses(path: Path) -> list[str]:
    """``"file:line: what"`` for every pickle-based use in one Python file."""
    text = path.read_text(encoding="utf-8")
    name = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    found = [
        f"{name}:{number}: {what}: {line.strip()}"
        for number, line in enumerate(text.splitlines(), start=1)
        for pattern, what in PATTERNS
        if pattern.search(line)
    ]
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.Import):
            bad = [a.name for a in node.names if a.name.split(".")[0] in PICKLING_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            bad = [
                f"{node.module}.{a.name}"
                for a in node.names
                if top in PICKLING_MODULES or (top, a.name) in PICKLING_NAMES
            ]
        else:
            continue
        found += [f"{name}:{node.lineno}: imports {b}" for b in bad]
    return found


def _sources() -> list[Path]:
    return sorted(p for folder in SCANNED for p in (REPO / folder).rglob("*.py"))


def test_the_scan_covers_the_project():
    files = {str(p.relative_to(REPO)) for p in _sources()}
    assert "rt_recon/decode/bundle.py" in files
    assert "rt_recon/transport/zmq.py" in files
    assert any(f.startswith("simulators/") for f in files)
    assert any(f.startswith("benchmarks/") for f in files)


def test_no_source_file_uses_pickle():
    found = [use for path in _sources() for use in pickle_uses(path)]
    assert found == [], "pickle-based code (the project stores arrays as safetensors):\n" + (
        "\n".join(found)
    )


@pytest.mark.parametrize(
    "line",
    [
        "import pickle",
        "import joblib as jl",
        "from dill import loads",
        "from torch import load",
        "data = pickle.loads(blob)",
        "state = torch.load(path)",
        "state = torch.load(path, weights_only=False)",
        "arr = np.load(path, allow_pickle=True)",
        "arr = numpy.load(path)",
        "frame = pd.read_pickle(path)",
        "torch.save(model.state_dict(), path)",
    ],
)
def test_the_scan_finds_each_kind_of_pickle_use(tmp_path, line):
    path = tmp_path / "offender.py"
    path.write_text(f'"""A module."""\n\n{line}\n', encoding="utf-8")
    found = pickle_uses(path)
    assert found, f"not flagged: {line}"
    assert all(f.startswith(f"{path}:3: ") for f in found), found


def test_the_scan_leaves_safe_code_alone(tmp_path):
    path = tmp_path / "fine.py"
    path.write_text(
        '"""Arrays go as safetensors, never pickle."""\n'
        "from safetensors.numpy import load_file\n"
        "arrays = load_file(path)\n"
        "np.save_load = None  # not a call of np.load\n",
        encoding="utf-8",
    )
    assert pickle_uses(path) == []
