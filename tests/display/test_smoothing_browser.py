"""The participant display's crossfade (``console.crossfade_ms``), measured in headless
Chromium as ``benchmarks.bench_display_smoothing`` measures it, in a short version: a real
console, pictures that differ strongly (uniform noise) published at TR pace, the canvas
read back at every animation frame.

Without the crossfade a new picture replaces the one before in one frame: that frame's
change is the whole change between the two pictures. With it the picture changes in many
small steps, each in proportion to the time since the frame before. Speeds are reported
(``-s``), never asserted; on this 2-core machine, loaded, the largest frame-to-frame change
was 28x smaller with the crossfade than without on a quiet run and 7.6x on a busy one
(docs/performance.md, "Smooth pictures between TRs").
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.bench_display_smoothing import measure_pictures, noise_pictures

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CROSSFADE_MS = 500.0


def test_the_crossfade_changes_the_picture_in_small_steps_and_without_it_in_one_jump(
    browser, record_property
):
    pictures = noise_pictures(4, 64, seed=1)
    tr_s = 0.8  # longer than the crossfade: each picture comes wholly up before the next
    off = measure_pictures(browser, pictures, tr_s, 0.0, "off")
    on = measure_pictures(browser, pictures, tr_s, CROSSFADE_MS, "crossfade")
    transitions = len(pictures) - 1
    full = np.array(off.picture_change)
    assert full.min() > 80  # noise: the pictures differ strongly

    # off: each new picture in one frame, whose change is the whole change between the two
    jumps = [c for c in off.change if c > 0]
    assert len(jumps) == transitions
    np.testing.assert_allclose(jumps, full, atol=0.5)

    # on: many frames per picture, each changing in proportion to the time it stood for
    steps = [c for c in on.change if c > 0]
    assert len(steps) >= 5 * transitions
    gaps = np.diff(on.frame_ms, prepend=on.frame_ms[0])
    for k, change in enumerate(on.change):
        stood_ms = max(gaps[max(k - 1, 0) : k + 2])  # the probe may read one frame late
        assert change <= full.max() * stood_ms / CROSSFADE_MS * 1.1 + 1.5, (k, change, stood_ms)
    assert on.largest < off.largest / 3  # well below the jump (measured: 7.6x to 28x)
    assert off.exact_at_rest and on.exact_at_rest  # the crossfade ends on the picture itself

    report = {s.condition: s.summary() for s in (off, on)}
    report["ratio_largest_off_to_on"] = round(off.largest / on.largest, 1)
    for key, value in report.items():
        record_property(key, value)
    print("\nparticipant display smoothing:", json.dumps(report, indent=2))
