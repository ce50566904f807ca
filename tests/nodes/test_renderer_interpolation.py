"""Pictures between TRs (``renderer.interpolate_fps``): frames rendered from latents between
two TRs' own, marked as interpolated, with every TR's own frame still published.

The renderer's math on the tiny model (frames between two TRs start from the latents
between theirs), then the node's steps in process on a clock of the test's own: a
subscriber that hands out latents messages at set times and otherwise moves the clock on
by the time the node would have waited, and renders that take no time (or a set time).
Last, the recorder: it counts interpolated frames and keeps only the TRs' own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from pydantic import ValidationError

from rt_recon.config import SessionConfig
from rt_recon.nodes.recorder import _record_message
from rt_recon.nodes.renderer import RendererNode
from rt_recon.nodes.runner import NodeContext
from rt_recon.protocol import (
    SCHEMA_KEY,
    Frame,
    FrameHeader,
    Interpolation,
    Latents,
    LatentsHeader,
    Message,
    RecorderCounters,
    Times,
    TrialRef,
    decode_message,
    is_interpolated,
)
from rt_recon.record.recording import RecordingReader, RecordingShapes, RecordingWriter
from rt_recon.render import Img2ImgRenderer, load_render_model
from rt_recon.transport.zmq import Received
from tests.conftest import free_port


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_render_model(tiny_model_dir)


def _latents(model, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Decoded z and c that differ strongly from another seed's."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=2.0, size=model.latent_shape).astype(np.float32)
    c = rng.normal(size=model.cond_shape).astype(np.float32)
    return z, c


def _differ(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def test_a_frame_between_two_trs_starts_from_the_latents_between_theirs(model):
    renderer = Img2ImgRenderer(model, steps=2, strength=0.5, seed=3)
    (za, ca), (zb, cb) = _latents(model, 1), _latents(model, 2)
    picture_a = renderer.render(za, ca)
    a = renderer.last_start
    picture_b = renderer.render(zb, cb)
    b = renderer.last_start
    assert a is not None and b is not None
    assert _differ(picture_a, picture_b) > 5.0  # two pictures that differ strongly

    halfway = renderer.render_between(a, b, 0.5)
    np.testing.assert_array_equal(halfway, renderer.render((za + zb) / 2, (ca + cb) / 2))
    assert _differ(halfway, picture_a) > 1.0 and _differ(halfway, picture_b) > 1.0
    # the ends are the TRs' own pictures
    np.testing.assert_array_equal(renderer.render_between(a, b, 0.0), picture_a)
    np.testing.assert_array_equal(renderer.render_between(a, b, 1.0), picture_b)
    # and along the way the picture moves from one to the other
    steps = [renderer.render_between(a, b, t) for t in (0.25, 0.5, 0.75)]
    to_b = [_differ(p, picture_b) for p in (picture_a, *steps, picture_b)]
    assert to_b == sorted(to_b, reverse=True)


def test_interpolating_changes_neither_blending_nor_the_last_start(model):
    renderer = Img2ImgRenderer(model, steps=2, strength=0.5, seed=3, blend=0.5)
    (za, ca), (zb, cb), (zc, cc) = (_latents(model, s) for s in (1, 2, 4))
    twin = Img2ImgRenderer(model, steps=2, strength=0.5, seed=3, blend=0.5)
    for z, c in ((za, ca), (zb, cb)):
        renderer.render(z, c)
        twin.render(z, c)
    a_then_b = renderer.last_start
    assert a_then_b is not None
    renderer.render_between(a_then_b, a_then_b, 0.5)
    assert renderer.last_start is a_then_b
    np.testing.assert_array_equal(renderer.render(zc, cc), twin.render(zc, cc))


# ----------------------------------------------------------------------- the node's steps


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class TimedLatents:
    """A latents subscriber on the test's clock: message ``i`` arrives at ``times[i]``;
    one message a call, or (``drain``) every message arrived, as the socket's
    ``receive_latest`` drains them: the newest, the older ones ``keep`` keeps, the rest
    skipped."""

    clock: Clock
    arrivals: list[tuple[float, Message]]
    waits: list[float] = field(default_factory=list)
    drain: bool = False

    def receive_latest(self, timeout: float, keep=None) -> Received:
        self.waits.append(timeout)
        if self.arrivals and self.arrivals[0][0] <= self.clock.now + timeout:
            at, message = self.arrivals.pop(0)
            self.clock.now = max(self.clock.now, at)
            got = Received(message)
            while self.drain and self.arrivals and self.arrivals[0][0] <= self.clock.now:
                older, got.message = got.message, self.arrivals.pop(0)[1]
                if keep is not None and keep(older):
                    got.kept.append(older)
                else:
                    got.skipped += 1
            return got
        self.clock.now += timeout
        return Received(None)

    def close(self) -> None:
        pass


class Collect:
    """A publisher that keeps every message, decoded (the wire header as it was sent)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, Message]] = []

    def send_frames(self, frames: list) -> None:
        self.sent.append((self.clock.now, decode_message(frames)))


def _config(tmp_path, tiny_model_dir, **renderer) -> SessionConfig:
    return SessionConfig.model_validate(
        {
            "paths": {"output_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache")},
            "renderer": {
                "model": str(tiny_model_dir),
                "steps": 2,
                "strength": 0.5,
                "seed": 3,
                "write_png": False,
                "frames_endpoint": f"tcp://127.0.0.1:{free_port()}",
                **renderer,
            },
        }
    )


def _message(
    model, fingerprint: str, tr: int, seed: int, run: str = "1", trial: TrialRef | None = None
) -> Message:
    """TR ``tr``'s latents; ``trial``: in trial mode, its trial (lag 2 TRs)."""
    z, c = _latents(model, seed)
    mode, lag = ("continuous", 0) if trial is None else ("trial", 2)
    header = LatentsHeader(
        seq=tr, tr=tr, volume_crc32=tr, session="s", run=run, model_fingerprint=fingerprint,
        lag_trs=lag, mode=mode, trial=trial, times=Times(acquired=0.0),
    )  # fmt: skip
    return decode_message(Latents(header, z, c).encode())


def _node(config: SessionConfig, model, clock: Clock) -> RendererNode:
    renderer = Img2ImgRenderer(model, steps=2, strength=0.5, seed=3)
    node = RendererNode(config, renderer=renderer, clock=clock)
    node.prepare()
    node.ctx = NodeContext(Collect(clock))
    return node


def _run(node: RendererNode, until: float) -> list[tuple[float, Frame, dict]]:
    """Step until the test's clock passes ``until``; then close. Every frame sent: when,
    the frame, its header as it went on the wire."""
    while node.clock() < until:
        node.step()
    node.close()
    return [
        (at, Frame.from_message(m), m.header)
        for at, m in node.ctx.publisher.sent  # type: ignore[union-attr]
    ]


def test_frames_between_trs_are_marked_and_lie_between_the_trs_latents_and_no_tr_is_lost(
    tmp_path, tiny_model_dir, model
):
    config = _config(tmp_path, tiny_model_dir, interpolate_fps=10, interpolate_ms=400)
    clock = Clock()
    node = _node(config, model, clock)
    fp = node.model.fingerprint
    # TR 0 at 0 s; TR 1 at 1 s; TR 2 at 1.15 s, while TR 1's frames are still going out
    arrivals = [(0.0, _message(model, fp, 0, 1)), (1.0, _message(model, fp, 1, 2)),
                (1.15, _message(model, fp, 2, 4))]  # fmt: skip
    node.latents = TimedLatents(clock, arrivals)  # type: ignore[assignment]
    sent = _run(node, until=2.0)

    order = [(f.header.tr, None if f.header.interpolated is None else f.header.interpolated.t)
             for _, f, _ in sent]  # fmt: skip
    assert order == [
        (0, None),  # the first TR: nothing to interpolate from, at once
        (1, 0.25),  # TR 1's first frame toward it, then TR 2's latents cut it short:
        (1, None),  # TR 1's own frame goes out at once, never lost
        (2, 0.25), (2, 0.5), (2, 0.75), (2, None),  # TR 2's, from TR 1's
    ]  # fmt: skip
    times = [at for at, _, _ in sent]
    assert times == pytest.approx([0.0, 1.1, 1.15, 1.25, 1.35, 1.45, 1.55])  # 10/s; 400 ms
    for _, frame, wire in sent:
        interpolated = frame.header.interpolated
        assert is_interpolated(wire) == (interpolated is not None)
        assert wire[SCHEMA_KEY] == (1 if interpolated is None else 2)
        if interpolated is not None:
            assert interpolated.from_tr == frame.header.tr - 1
            assert frame.header.times.published == pytest.approx(
                1.1 if frame.header.tr == 1 else 1.15 + 0.1 * round(interpolated.t * 4)
            )
    assert node.counters.rendered == 3 and node.counters.interpolated == 4
    assert node.counters.tr == 2

    # the frame halfway from TR 1 to TR 2 is rendered from the latents halfway between
    (z1, c1), (z2, c2) = _latents(model, 2), _latents(model, 4)
    fresh = Img2ImgRenderer(model, steps=2, strength=0.5, seed=3)
    halfway = next(
        f for _, f, _ in sent if f.header.interpolated and f.header.interpolated.t == 0.5
    )
    np.testing.assert_array_equal(halfway.image, fresh.render((z1 + z2) / 2, (c1 + c2) / 2))
    own = {f.header.tr: f.image for _, f, _ in sent if f.header.interpolated is None}
    np.testing.assert_array_equal(own[2], fresh.render(z2, c2))


def test_a_slow_renderer_skips_frames_it_cannot_make_in_time_and_a_new_run_starts_afresh(
    tmp_path, tiny_model_dir, model
):
    config = _config(tmp_path, tiny_model_dir, interpolate_fps=10, interpolate_ms=400)
    clock = Clock()
    node = _node(config, model, clock)
    assert node.renderer is not None
    render, render_between = node.renderer.render, node.renderer.render_between

    def slow(function):
        def call(*args, **kwargs):
            clock.now += 0.25  # each render takes 250 ms, 2.5 frame periods
            return function(*args, **kwargs)

        return call

    node.renderer.render = slow(render)  # type: ignore[method-assign]
    node.renderer.render_between = slow(render_between)  # type: ignore[method-assign]
    fp = node.model.fingerprint
    arrivals = [(0.0, _message(model, fp, 0, 1)), (1.0, _message(model, fp, 1, 2)),
                (3.0, _message(model, fp, 0, 4, run="2"))]  # fmt: skip
    node.latents = TimedLatents(clock, arrivals)  # type: ignore[assignment]
    sent = _run(node, until=4.0)

    order = [(f.header.run, f.header.tr, f.header.interpolated and f.header.interpolated.t)
             for _, f, _ in sent]  # fmt: skip
    # TR 1 rendered at 1.25 s: the frame due at 1.35 cannot be made (250 ms from 1.25), the
    # one due at 1.55 (t = 0.75) can; TR 1's own frame on time, 400 ms after it was rendered
    assert order == [("1", 0, None), ("1", 1, 0.75), ("1", 1, None), ("2", 0, None)]
    times = [at for at, _, _ in sent]
    assert times == pytest.approx([0.25, 1.55, 1.65, 3.25])


def test_an_interpolation_without_a_frame_between_trs_is_a_config_error(tmp_path, tiny_model_dir):
    with pytest.raises(ValidationError, match=r"interpolate_fps 2 over interpolate_ms 500 leaves"):
        _config(tmp_path, tiny_model_dir, interpolate_fps=2, interpolate_ms=500)
    assert (
        _config(tmp_path, tiny_model_dir, interpolate_fps=30).renderer.interpolation_steps() == 15
    )


def test_without_interpolation_every_frame_is_a_trs_own_at_once(tmp_path, tiny_model_dir, model):
    config = _config(tmp_path, tiny_model_dir)
    assert config.renderer.interpolate_fps == 0
    clock = Clock()
    node = _node(config, model, clock)
    fp = node.model.fingerprint
    arrivals = [(0.0, _message(model, fp, 0, 1)), (1.0, _message(model, fp, 1, 2))]
    node.latents = TimedLatents(clock, arrivals)  # type: ignore[assignment]
    sent = _run(node, until=1.5)
    assert [(at, f.header.tr, w[SCHEMA_KEY]) for at, f, w in sent] == [(0.0, 0, 1), (1.0, 1, 1)]
    assert node.counters.interpolated == 0


def test_the_recorder_counts_interpolated_frames_and_records_only_the_trs_own(tmp_path):
    def frame(tr: int, t: float | None) -> Message:
        header = FrameHeader.from_latents(
            _message_header(tr), 0, tr + 0.1, tr + 0.2, tr + 0.3,
            interpolated=None if t is None else Interpolation(from_tr=tr - 1, t=t),
        )  # fmt: skip
        image = np.full((8, 8, 3), 100 if t is None else 50, np.uint8)
        return decode_message(Frame(header, image).encode())

    counters = RecorderCounters()
    shapes = RecordingShapes(n_channels=1, z_shape=(1,), c_shape=(1,), image_shape=(8, 8, 3))
    with RecordingWriter(tmp_path / "rec.h5", shapes) as recording:
        for message in (frame(0, None), frame(1, 0.5), frame(1, None)):
            _record_message(message, recording, counters)
        recording.flush()
    with RecordingReader(tmp_path / "rec.h5") as reader:
        headers, images = reader.frames()
    assert [h["tr"] for h in headers] == [0, 1]
    assert not any(is_interpolated(h) for h in headers)
    assert (images == 100).all()  # the TRs' own pictures only
    assert (counters.frames, counters.interpolated, counters.rejected) == (2, 1, 0)


def _message_header(tr: int) -> LatentsHeader:
    return LatentsHeader(
        seq=tr, tr=tr, volume_crc32=tr, session="s", run="1", model_fingerprint="m",
        lag_trs=0, mode="continuous", times=Times(acquired=float(tr)),
    )  # fmt: skip


def test_a_renderer_behind_its_decoder_still_renders_each_trials_scored_tr(
    tmp_path, tiny_model_dir, model
):
    """Five TRs waiting at once (a renderer behind): the newest is rendered and the older
    ones skipped, except TR 2, the scored TR of the trial with onset TR 0 (lag 2): a trial
    without its frame would count as a failure."""
    config = _config(tmp_path, tiny_model_dir)
    clock = Clock()
    node = _node(config, model, clock)
    fp = node.model.fingerprint
    arrivals = [
        (0.0, _message(model, fp, tr, tr, trial=TrialRef(index=0, stimulus_id=7, onset_tr=0,
                                                         complete=tr >= 2)))
        for tr in range(5)
    ]  # fmt: skip
    node.latents = TimedLatents(clock, arrivals, drain=True)  # type: ignore[assignment]
    sent = _run(node, until=0.5)
    assert [f.header.tr for _, f, _ in sent] == [2, 4]
    assert node.counters.skipped_stale == 3  # TRs 0, 1 and 3
    # without the rule's exception, only the newest
    clock = Clock()
    node = _node(config, model, clock)
    node.latents = TimedLatents(clock, [(0.0, _message(model, fp, tr, tr)) for tr in range(5)],
                                drain=True)  # type: ignore[assignment]  # fmt: skip
    assert [f.header.tr for _, f, _ in _run(node, until=0.5)] == [4]
