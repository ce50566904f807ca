"""Lazy package exports: a package's API names, imported from their modules on first use.

So ``import rt_recon.render`` (or ``rt_recon.nodes``) does not load torch and
diffusers until a name that needs them is used. A package calls::

    __getattr__, __dir__ = lazy_exports(__name__, {"Name": "module", ...}, __all__)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(
    package: str, sources: Mapping[str, str], names: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: name -> its submodule (relative name)."""

    def get_attribute(name: str) -> Any:
        module = sources.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # the next lookup does not come here
        return value

    def list_names() -> list[str]:
        return sorted({*vars(sys.modules[package]), *names})

    return get_attribute, list_names
