"""Where the real scanner data lives, and a clean skip where it does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA


def shared_path(*parts: str) -> Path:
    """``../shared/data/<parts>``, or skip the test if it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared scanner data not found: {path}")
    return path
