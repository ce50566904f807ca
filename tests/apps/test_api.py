"""``rt_recon.apps`` re-exports each application's entry point, imported on first use."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys

import pytest

import rt_recon.apps as apps


@pytest.mark.parametrize("name", apps.__all__)
def test_each_entry_point_is_its_module_s_own(name):
    entry = getattr(apps, name)
    assert callable(entry) and entry.__module__.startswith("rt_recon.apps.")
    assert getattr(importlib.import_module(entry.__module__), name) is entry


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(
        AttributeError, match=re.escape("'rt_recon.apps' has no attribute 'run_nothing'")
    ):
        apps.run_nothing  # noqa: B018


def test_importing_the_session_app_leaves_the_others_unloaded():
    code = (
        "import sys, rt_recon.apps.session; "
        "print(sorted(m for m in sys.modules if m.startswith('rt_recon.apps.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['rt_recon.apps.preflight', 'rt_recon.apps.session']"
