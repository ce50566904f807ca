"""The protocol's clock: LSL's local_clock is CLOCK_MONOTONIC on Linux (docs/protocol.md)."""

from __future__ import annotations

import sys
import time

import pylsl
import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the doc's claim is for Linux")
def test_lsl_local_clock_is_clock_monotonic():
    for _ in range(5):
        before = time.clock_gettime(time.CLOCK_MONOTONIC)
        lsl = pylsl.local_clock()
        after = time.clock_gettime(time.CLOCK_MONOTONIC)
        assert before <= lsl <= after
