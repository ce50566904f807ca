"""One trial rule: the console, the decoder's trial tracker and the scoring of a recording pair
the same markers with the same onset TRs and score the same frames.

In process, no sockets: the same volumes (TR, LSL stamp) and the same markers, sent
without ``type`` and without ``run`` as a plain stimulus program sends them, go

* to :class:`rt_recon.decode.trial_tracker.TrialTracker` in the order they arrive (markers
  between volumes, one late), as the decoder feeds it;
* to :class:`rt_recon.display.state.ConsoleState` as the console gets them: the markers,
  and the frames rendered from the volumes (``times.acquired`` is the volume's stamp);
* into a recording (:class:`rt_recon.record.recording.RecordingWriter`) scored by
  :func:`rt_recon.evaluate.session_eval.evaluate_recording`.

Each onset TR is also worked out here from the rule's words (the volume stamped nearest
the marker, ties to the later), so the three cannot agree on a wrong answer.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from rt_recon.config import BUDGET_PRESETS_MS
from rt_recon.decode.trial_tracker import TrialTracker
from rt_recon.display.state import ConsoleState
from rt_recon.evaluate.session_eval import evaluate_recording
from rt_recon.protocol import Marker
from rt_recon.record.recording import RecordingShapes, RecordingWriter
from tests.display._helpers import frame_header, pattern

N_VOLUMES = 40
LAG_TRS = 3
N_WINDOW = 2
T0 = 4711.125  # LSL seconds
INTERVAL_S = 0.75  # t0 and the interval are binary fractions: a halfway stamp is a true tie
SIZE = 16  # pictures, pixels


@dataclass(frozen=True)
class Scenario:
    name: str
    jitter_s: float  # acquisition stamps off the regular grid by this much
    no_frame_trs: frozenset[int]  # TRs the renderer skipped (no frame, recorded or shown)


SCENARIOS = [
    Scenario("regular stamps, every frame", 0.0, frozenset()),
    Scenario("jittered stamps, every frame", 0.05, frozenset()),
    Scenario("regular stamps, frames skipped", 0.0, frozenset({7, 12, 13, 24, 25, 26})),
]


def _stamps(jitter_s: float) -> list[float]:
    """Volume stamps; jittered, odd volumes late and even ones early, so that the gaps
    alternate longer and shorter than the interval (where counting intervals from one
    volume is not the nearest volume)."""
    return [T0 + k * INTERVAL_S + (jitter_s if k % 2 else -jitter_s) for k in range(N_VOLUMES)]


def _markers(stamps: list[float]) -> list[tuple[dict, float]]:
    """Markers as a stimulus program sends them (no ``type``, no ``run``), and their stamps:
    at a volume, between volumes (nearer the earlier, nearer the later), exactly halfway,
    just before a volume; plus two that are no trial."""

    def between(k: int, fraction: float) -> float:
        return stamps[k] + fraction * (stamps[k + 1] - stamps[k])

    return [
        ({"stimulus_id": 11, "caption": "at a volume"}, stamps[4]),
        ({"stimulus_id": 12}, between(8, 0.3)),
        ({"caption": "fixation"}, between(9, 0.5)),  # no stimulus_id: no trial
        ({"stimulus_id": 13}, between(12, 0.7)),
        ({"type": "response", "stimulus_id": 99}, stamps[14]),  # another type: no trial
        ({"stimulus_id": 14, "duration": 0.5}, (stamps[16] + stamps[17]) / 2),  # halfway
        ({"stimulus_id": 15}, between(20, 0.45)),
        ({"stimulus_id": 16}, between(24, 0.55)),
        ({"stimulus_id": 17}, stamps[29] - 0.001),
    ]


def _expected_onset(stamp: float, stamps: list[float]) -> int:
    """The rule in words: the volume stamped nearest, ties to the later."""
    return min(range(len(stamps)), key=lambda k: (abs(stamp - stamps[k]), -k))


def _arrivals(stamps: list[float], markers: list[tuple[dict, float]]) -> list[tuple]:
    """Everything in the order it arrives: a volume 1 ms after its stamp, a marker 5 ms after
    its own, except one that comes 1.5 intervals late."""
    events = [(stamp + 0.001, "volume", k, stamp) for k, stamp in enumerate(stamps)]
    for i, (marker, stamp) in enumerate(markers):
        delay = 1.5 * INTERVAL_S if marker.get("stimulus_id") == 15 else 0.005
        events.append((stamp + delay, "marker", i, stamp))
    return sorted(events)


def _record(path: Path, stamps, markers, frame_trs) -> Path:
    """A recording of the session: volumes, markers (each after the volume before it) and
    the frames rendered, each carrying its volume's CRC-32 as the decoder's headers do."""
    volumes = [np.full(8, k, np.float32) + np.arange(8, dtype=np.float32) for k in range(N_VOLUMES)]
    shapes = RecordingShapes(8, (1, 2, 2), (1, 2), (SIZE, SIZE, 3))
    with RecordingWriter(path, shapes) as rec:
        for k, (values, stamp) in enumerate(zip(volumes, stamps, strict=True)):
            rec.add_volume(values, stamp)
            for marker, marker_stamp in markers:
                if stamps[k] <= marker_stamp < (stamps[k + 1] if k + 1 < N_VOLUMES else np.inf):
                    rec.add_marker(marker, marker_stamp)
            if k in frame_trs:
                header = frame_header(k, stamp, lag_trs=LAG_TRS, volume_crc32=zlib.crc32(values))
                rec.add_frame(header.to_json(), pattern(k, SIZE))
            rec.flush()
    return path


def _stimuli() -> dict[int, np.ndarray]:
    """A picture per stimulus id (the scoring needs the truths)."""
    return {sid: pattern(100 + sid, SIZE) for sid in range(100)}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_console_tracker_and_scoring_pair_markers_without_type_alike(scenario, tmp_path):
    stamps = _stamps(scenario.jitter_s)
    markers = _markers(stamps)
    frame_trs = [k for k in range(N_VOLUMES) if k not in scenario.no_frame_trs]
    trials = [(m, s) for m, s in markers if "stimulus_id" in m and "type" not in m]
    expected = sorted((_expected_onset(s, stamps), m["stimulus_id"]) for m, s in trials)

    # the decoder's tracker, fed in arrival order
    tracker = TrialTracker(LAG_TRS, N_WINDOW)
    # the console: markers as they arrive, frames some 200 ms after their volume
    console = ConsoleState(BUDGET_PRESETS_MS["cpu"], history=N_VOLUMES)
    records = []
    for when, kind, index, stamp in _arrivals(stamps, markers):
        if kind == "volume":
            tracker.add_volume(index, stamp)
            if index in frame_trs:
                header = frame_header(index, stamp, lag_trs=LAG_TRS)
                records.append(console.on_frame(header, now=when + 0.2))
        else:
            tracker.add_marker(markers[index][0], stamp)
            console.on_marker(Marker.from_json(markers[index][0]), stamp)
    # the scoring of the recording
    recording = _record(tmp_path / "session.h5", stamps, markers, frame_trs)
    evaluation = evaluate_recording(recording, _stimuli())

    tracked = sorted((t.onset_tr, t.stimulus_id) for t in tracker.trials)
    scored_rows = sorted((r.onset_tr, r.stimulus_id) for r in evaluation.trials)
    console_scored = sorted((r.truth.onset_tr, r.truth.stimulus_id) for r in records
                            if r.truth is not None and r.truth.scored)  # fmt: skip
    assert tracked == expected
    assert scored_rows == expected
    # a trial whose scored frame was never rendered is missing for the scoring, unseen here
    with_frames = [r for r in evaluation.trials if r.frame_tr is not None]
    assert console_scored == sorted((r.onset_tr, r.stimulus_id) for r in with_frames)
    assert len(with_frames) == len(expected) - len({o + LAG_TRS for o, _ in expected}
                                                   & scenario.no_frame_trs)  # fmt: skip
    # the scored frames: the console marks the very frames the scoring takes
    assert sorted(r.frame_tr for r in with_frames) == sorted(
        r.tr for r in records if r.truth is not None and r.truth.scored
    )
    assert all(r.frame_tr == r.onset_tr + LAG_TRS for r in with_frames)
    # and at each of them the decoder estimates that very trial (the frame header's `trial`)
    for onset, stimulus_id in expected:
        assert tracker.current(onset + LAG_TRS).stimulus_id == stimulus_id
    if scenario.jitter_s == 0.0:  # a true tie: the later volume
        assert (17, 14) in expected
