"""The package as users install it: the wheel's contents, its layers, and the CLI running from it.

Two folders of the repository install inside ``rt_recon`` (pyproject's
``package-dir``): ``simulators/`` as ``rt_recon.simulators`` (never a
generic top-level ``simulators``) and ``configs/`` as ``rt_recon.configs``.
A checkout hides both from tools that walk ``rt_recon/`` (import-linter), so
the layers contract is also checked here over the installed layout.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import time
import venv
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="reads pyproject.toml (Python 3.11+)")

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
PACKAGES: list[str] = SETUPTOOLS["packages"]
PACKAGE_DIR: dict[str, str] = SETUPTOOLS["package-dir"]

#: What a wheel needs from the checkout to build (nothing else is copied).
BUILD_INPUTS = ("pyproject.toml", "README.md", "rt_recon", "simulators", "configs")


def _source_dir(package: str) -> Path:
    """The checkout folder a listed package installs from."""
    return REPO / PACKAGE_DIR.get(package, package.replace(".", "/"))


def _modules(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.py")}


def _stage_installed_layout(dest: Path) -> Path:
    """Copy every listed package's modules to where a wheel installs them; return ``dest``."""
    for package in PACKAGES:
        target = dest / package.replace(".", "/")
        target.mkdir(parents=True, exist_ok=True)
        for module in _modules(_source_dir(package)):
            shutil.copy2(_source_dir(package) / module, target / module)
    return dest


def test_the_package_list_names_every_package_folder():
    folders = {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in (REPO / "rt_recon").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    expected = sorted(folders | set(PACKAGE_DIR))
    assert sorted(PACKAGES) == expected, (
        "pyproject's [tool.setuptools] packages must list every folder of modules under "
        f"rt_recon/ and the mapped ones: expected {expected}, found {sorted(PACKAGES)}"
    )
    assert "simulators" not in PACKAGES and all(p.startswith("rt_recon") for p in PACKAGES)


def test_the_layers_contract_holds_in_the_installed_layout(tmp_path):
    staged = _stage_installed_layout(tmp_path / "installed")
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=staged,  # import-linter puts the working directory first on sys.path
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout
    n_modules = len(list(staged.rglob("*.py")))  # rt_recon.simulators included
    assert f"Analyzed {n_modules} files" in done.stdout, done.stdout


def _build_wheel(out: Path, work: Path) -> Path:
    """Build the wheel from a copy of the build inputs (a checkout's stale build/ stays out)."""
    source = work / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-w", str(out)]
    if int(version("setuptools").split(".")[0]) >= 68:  # build-system.requires is met here
        command.append("--no-build-isolation")  # no download of setuptools
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("rt_recon-*.whl")
    return wheel


def _check_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"rt_recon"}, sorted(tops)
    for package in PACKAGES:
        folder = package.replace(".", "/")
        missing = {m for m in _modules(_source_dir(package)) if f"{folder}/{m}" not in names}
        assert not missing, f"{package}: modules missing from the wheel: {sorted(missing)}"
    configs = {p.name for p in (REPO / "configs").glob("*.yaml")}
    assert {"demo.yaml", "scanner.yaml", "sd-turbo.yaml"} <= configs
    assert {f"rt_recon/configs/{c}" for c in configs} <= names
    for folder in (
        "rt_recon/assets/embedded_model",
        "rt_recon/assets/metric_net",
        "rt_recon/display/static",
    ):
        files = {p.relative_to(REPO).as_posix() for p in (REPO / folder).rglob("*") if p.is_file()}
        assert files and files <= names, f"missing from the wheel: {sorted(files - names)}"


def _fresh_venv(root: Path, wheel: Path) -> Path:
    """A new virtual environment with the wheel installed (not editable); its ``bin``.

    The dependencies come from this environment's site-packages, listed in a
    ``.pth`` file: a path added that way does not get its own ``.pth`` files
    processed, so this environment's editable install of rt_recon stays off.
    """
    venv.EnvBuilder(with_pip=True).create(root)
    bin_dir = root / "bin"
    done = subprocess.run(
        [bin_dir / "python", "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (fresh_site,) = root.glob("lib/python*/site-packages")
    (fresh_site / "_rt_recon_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return bin_dir


_WHERE = """
import importlib.util, json
import rt_recon, rt_recon.cli, rt_recon.simulators.world
from rt_recon.render.embedded import EMBEDDED_DIR
from rt_recon.render.model import check_model_dir
check_model_dir(EMBEDDED_DIR)
print(json.dumps({
    "rt_recon": rt_recon.__file__,
    "simulators": rt_recon.simulators.world.__file__,
    "default_config": str(rt_recon.cli.DEFAULT_CONFIG),
    "embedded_model": str(EMBEDDED_DIR),
    "top_level_simulators": importlib.util.find_spec("simulators") is not None,
}))
"""


@pytest.mark.slow
def test_the_wheel_installs_and_runs_from_anywhere(tmp_path):
    start = time.monotonic()
    wheel = _build_wheel(tmp_path / "dist", tmp_path)
    _check_contents(wheel)
    root = tmp_path / "venv"
    bin_dir = _fresh_venv(root, wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"

    def run(*command: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(c) for c in command],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
        return done

    where = json.loads(run(bin_dir / "python", "-c", _WHERE).stdout)
    installed = root.resolve()
    for key in ("rt_recon", "simulators", "default_config", "embedded_model"):
        assert Path(where[key]).resolve().is_relative_to(installed), (key, where[key])
    assert where["default_config"].endswith("configs/demo.yaml")
    assert not where["top_level_simulators"]

    assert "usage: rt-recon demo" in run(bin_dir / "rt-recon", "demo", "--help").stdout
    # the shipped default config's simulation section, generated by the packaged simulators
    out = elsewhere / "session"
    done = run(bin_dir / "rt-recon", "simulate", "session", "--out", out, timeout=240)
    assert f"wrote synthetic session to {out}" in done.stdout
    manifest = json.loads((out / "dataset.json").read_text())
    # demo.yaml (the realistic participant): 12 training runs, a validation and a test run
    assert [r["role"] for r in manifest["runs"]] == ["train"] * 12 + ["validation", "test"]
    print(f"\nbuilt, installed and ran the wheel in {time.monotonic() - start:.0f} s")
