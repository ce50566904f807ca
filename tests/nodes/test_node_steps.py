"""The nodes' per-TR steps, in process: fake inlets and publishers, no process, no socket.

The runner (sockets, heartbeat thread) is tested in tests/nodes/test_runner.py; here
each node gets a :class:`~rt_recon.nodes.runner.NodeContext` whose publisher collects
what it sends, and inputs that hand it volumes, markers and messages from lists.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from rt_recon.acquire.nifti import load_nifti_run
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.decode.online import OnlineDecoder
from rt_recon.nodes.decoder import DecoderNode
from rt_recon.nodes.recorder import RecorderInputs, RecorderNode
from rt_recon.nodes.renderer import RendererNode
from rt_recon.nodes.runner import NodeContext
from rt_recon.protocol import (
    Frame,
    Latents,
    Marker,
    Message,
    Times,
    VolumeStreamMeta,
    decode_message,
    encode_marker,
    onset_tr_from_seconds,
)
from rt_recon.record.recording import RecordingReader
from rt_recon.record.segments import SessionReader
from tests.nodes._latents import latents_header


class Collect:
    """A publisher that keeps every message it is given, decoded."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def send_frames(self, frames: list) -> None:
        self.messages.append(decode_message(frames))

    def of(self, topic: str) -> list[Message]:
        return [m for m in self.messages if m.topic == topic]


class ListInlet:
    """Volumes from a list, each with its stamp (and acquisition index, if given), as a
    VolumeInlet hands them out; ``end``: the run ends after the last (else it just pauses)."""

    def __init__(self, meta: VolumeStreamMeta, volumes, stamps, indexes=None, end=False):
        self.meta = meta
        indexes = [None] * len(stamps) if indexes is None else indexes
        self._items = list(zip(volumes, stamps, indexes, strict=True))
        self._end = end
        self.values = np.zeros(meta.n_channels, np.float32)
        self.index: int | None = None
        self.ended: str | None = None
        self.last_stamp = -np.inf
        self.closed = False

    def pull(self, timeout: float) -> float | None:
        if not self._items:
            if self._end:
                self.ended = "end of run"
            return None
        volume, stamp, self.index = self._items.pop(0)
        self.values = np.asarray(volume, dtype=np.float32)
        self.last_stamp = stamp
        return stamp

    def close(self) -> None:
        self.closed = True


class ListMarkers:
    """Marker samples that 'arrive' once the inlet's last volume is within half a TR of them."""

    def __init__(self, inlet: ListInlet, samples: list[tuple[str, float]], interval: float):
        self._inlet, self._samples, self._interval = inlet, list(samples), interval

    def pull_text(self, timeout: float) -> tuple[str, float] | None:
        if self._samples and self._samples[0][1] <= self._inlet.last_stamp + self._interval / 2:
            return self._samples.pop(0)
        return None

    def pull(self, timeout: float) -> tuple[Marker, float] | None:
        from rt_recon.protocol import decode_marker

        got = self.pull_text(timeout)
        return None if got is None else (decode_marker(got[0]), got[1])

    def close(self) -> None:
        pass


@pytest.fixture
def test_run(small_dataset):
    files = small_dataset.runs("test")[0]
    run = load_nifti_run(files.bold, files.events)
    meta = VolumeStreamMeta(shape=run.shape, affine=run.affine, tr_s=run.tr_s, session="s", run="9")
    return run, meta


def _decoder(node_config, bundle):
    node, ctx = DecoderNode(node_config, bundle), NodeContext(Collect())
    return node, ctx


def test_the_decoders_step_publishes_exactly_the_offline_latents(node_config, test_run):
    run, meta = test_run
    bundle = DecoderBundle.load(node_config.decoder.bundle)
    node, ctx = _decoder(node_config, bundle)
    t0 = 1000.0
    stamps = [t0 + i * run.tr_s for i in range(len(run.volumes))]
    inlet = ListInlet(meta, run.volumes, stamps)
    node.start(ctx, inlet)  # no markers: continuous mode
    for _ in range(len(run.volumes) + 2):  # two more: nothing left to pull
        node.step()
    offline = OnlineDecoder(bundle)
    expected = [offline.update(v) for v in run.volumes]
    published = [Latents.from_message(m) for m in ctx.publisher.of("latents")]
    assert [p.header.tr for p in published] == list(range(len(run.volumes)))
    for got, want, volume in zip(published, expected, run.volumes, strict=True):
        np.testing.assert_array_equal(got.z, want["z"])
        np.testing.assert_array_equal(got.c, want["c"])
        assert got.header.volume_crc32 == zlib.crc32(volume.astype(np.float32))
        assert got.header.mode == "continuous" and got.header.trial is None
        assert got.header.model_fingerprint == bundle.model.fingerprint
    assert node.counters.published == node.counters.volumes == len(run.volumes)
    node.close()
    assert inlet.closed


def test_the_decoders_step_takes_trials_from_markers_without_type(node_config, test_run):
    run, meta = test_run
    bundle = DecoderBundle.load(node_config.decoder.bundle)
    node, ctx = _decoder(node_config, bundle)
    t0 = 50.0
    inlet = ListInlet(meta, run.volumes, [t0 + i * run.tr_s for i in range(len(run.volumes))])
    events = [e for e in run.events if "stimulus_id" in e]
    samples = [(encode_marker({k: v for k, v in e.items() if k != "type"}), t0 + e["onset"])
               for e in events]  # fmt: skip
    samples.insert(1, ("not json", samples[0][1]))  # dropped and counted, not fatal
    node.start(ctx, inlet, ListMarkers(inlet, samples, run.tr_s))
    for _ in range(len(run.volumes)):
        node.step()
    headers = [Latents.from_message(m).header for m in ctx.publisher.of("latents")]
    onsets = {onset_tr_from_seconds(e["onset"], run.tr_s): int(e["stimulus_id"]) for e in events}
    complete = {
        h.trial.onset_tr: h.trial.stimulus_id for h in headers if h.trial and h.trial.complete
    }
    assert all(h.mode == "trial" for h in headers)
    last_tr = len(run.volumes) - 1
    scored = {o: s for o, s in onsets.items() if o + bundle.window.lag_trs <= last_tr}
    assert complete == scored  # every trial reached its complete estimate, at its own onset
    assert node.counters.bad_markers == 1


def test_the_decoder_counts_gaps_and_gives_duplicates_no_tr(node_config, test_run):
    run, meta = test_run
    node, ctx = _decoder(node_config, DecoderBundle.load(node_config.decoder.bundle))
    v = run.volumes
    stamps = [0.0, 1.0, 4.0, 4.0, 5.0]  # TRs 2 and 3 never arrive; the volume at 4 s twice
    node.start(ctx, ListInlet(meta, [v[0], v[1], v[4], v[4], v[5]], stamps))
    for _ in range(5):
        node.step()
    headers = [Latents.from_message(m).header for m in ctx.publisher.of("latents")]
    assert [h.tr for h in headers] == [0, 1, 4, 5]
    assert [h.missed_before for h in headers] == [0, 0, 2, 0]
    assert (node.counters.missed, node.counters.duplicates, node.counters.volumes) == (2, 1, 5)


def test_the_acquisition_index_is_the_tr_and_volumes_before_the_first_are_flagged(
    node_config, test_run
):
    run, meta = test_run
    node, ctx = _decoder(node_config, DecoderBundle.load(node_config.decoder.bundle))
    v = run.volumes
    # the decoder joined late (volumes 0..3 went by), then 6 is lost, 7 comes twice
    indexes = [4, 5, 7, 7, 8]
    stamps = [float(i) for i in indexes]
    node.start(ctx, ListInlet(meta, [v[i] for i in indexes], stamps, indexes))
    for _ in range(len(indexes)):
        node.step()
    headers = [Latents.from_message(m).header for m in ctx.publisher.of("latents")]
    assert [(h.tr, h.missed_before) for h in headers] == [(4, 4), (5, 0), (7, 1), (8, 0)]
    assert [h.volume_crc32 for h in headers] == [zlib.crc32(v[h.tr]) for h in headers]
    assert (node.counters.missed, node.counters.duplicates) == (5, 1)


def test_a_new_run_restarts_at_tr_0_and_a_run_on_another_grid_is_refused_not_fatal(
    node_config, test_run
):
    run, meta = test_run
    node, ctx = _decoder(node_config, DecoderBundle.load(node_config.decoder.bundle))
    ctx.state = "streaming"
    v = run.volumes
    other_shape = (meta.shape[0] + 2, *meta.shape[1:])
    other = VolumeStreamMeta(shape=other_shape, affine=meta.affine, tr_s=meta.tr_s, run="8",
                             series="8")  # fmt: skip
    big = np.zeros(other.n_channels, np.float32)
    first = ListInlet(meta, [v[0], v[1]], [0.0, 1.0], [0, 1], end=True)
    streams = [
        ListInlet(other, [big, big, big], [5.0, 6.0, 7.0], [0, 1, 2], end=True),
        ListInlet(VolumeStreamMeta(**{**vars(meta), "run": "9b"}), [v[2], v[3]], [9.0, 10.0],
                  [0, 1]),
    ]  # fmt: skip
    node.reopen = lambda: streams.pop(0)
    node.start(ctx, first)
    states, errors = [], []
    for _ in range(12):
        node.step()
        states.append(ctx.state)
        errors.append(node.counters.error)
    headers = [Latents.from_message(m).header for m in ctx.publisher.of("latents")]
    assert [(h.run, h.tr, h.volume_crc32) for h in headers] == [
        ("9", 0, zlib.crc32(v[0])), ("9", 1, zlib.crc32(v[1])),
        ("9b", 0, zlib.crc32(v[2])), ("9b", 1, zlib.crc32(v[3])),
    ]  # fmt: skip
    assert "refused" in states and states[-1] == "streaming"
    refusal = next(e for e in errors if e)
    assert refusal.startswith("run 8 (series 8) refused")
    assert f"shape {meta.shape}" in refusal and f"shape {other_shape}" in refusal  # both named
    assert (node.counters.refused, node.counters.runs, node.counters.run) == (3, 3, "9b")
    assert node.counters.error is None
    assert first.closed


def _latents_message(node_config, fingerprint: str, *, with_c: bool = True) -> Message:
    bundle = DecoderBundle.load(node_config.decoder.bundle)
    header = latents_header(
        bundle, tr=3, volume_crc32=1, model_fingerprint=fingerprint,
        times=Times(acquired=1.0, sent=1.01),
    )  # fmt: skip
    z = np.zeros(bundle.model.latent_shape, np.float32)
    c = np.zeros(bundle.model.cond_shape, np.float32)
    message = Latents(header, z, c)
    frames = message.encode() if with_c else message.encode()[:-1]
    if not with_c:
        head = json.loads(frames[1])
        head["buffers"] = head["buffers"][:1]
        frames[1] = json.dumps(head).encode()
    return decode_message(frames)


@pytest.fixture
def renderer_node(node_config, tmp_path):
    from rt_recon.render import load_render_model, make_renderer

    config = node_config.with_overrides({"paths.output_dir": str(tmp_path / "out")})
    model = load_render_model(config.renderer.model)
    node = RendererNode(config, renderer=make_renderer(model, config))
    node.prepare()
    node.ctx = NodeContext(Collect())
    return node


def test_the_renderers_step_renders_and_passes_the_header_on(renderer_node, node_config):
    fingerprint = renderer_node.model.fingerprint
    frame = renderer_node.process(_latents_message(node_config, fingerprint), received=1.02)
    assert frame is not None
    (sent,) = renderer_node.ctx.publisher.of("frame")
    back = Frame.from_message(sent)
    assert back.header.tr == 3 and back.header.model_fingerprint == fingerprint
    assert back.header.times.render_received == 1.02
    assert back.image.shape == (*(renderer_node.model.image_size,) * 2, 3)
    assert (renderer_node.config.paths.output_dir / "frames" / "tr-00003.png").is_file()


def test_latents_for_another_model_are_skipped_and_counted_never_rendered(
    renderer_node, node_config
):
    for _ in range(3):
        assert renderer_node.process(_latents_message(node_config, "someothermodel"), 1.0) is None
    assert renderer_node.counters.foreign_model == 3
    assert renderer_node.counters.rendered == 0
    assert renderer_node.ctx.publisher.messages == []
    missing_c = _latents_message(node_config, renderer_node.model.fingerprint, with_c=False)
    assert renderer_node.process(missing_c, 1.0) is None
    assert renderer_node.counters.malformed == 1


class ListMessages:
    def __init__(self, messages: list[Message]):
        self._messages = list(messages)
        self.closed = False

    def receive(self, wait_ms: int) -> list[Message]:
        out, self._messages = self._messages, []
        return out

    def take(self, wait_ms: int) -> int:
        n, self._messages = len(self._messages), []
        return n

    def close(self) -> None:
        self.closed = True


def test_the_recorders_step_records_everything_as_sent(node_config, test_run, tmp_path):
    run, meta = test_run
    config = node_config.with_overrides({"recorder.path": str(tmp_path / "rec.h5")})
    node, ctx = RecorderNode(config), NodeContext(Collect())
    inlet = ListInlet(meta, run.volumes[:6], [10.0 + i for i in range(6)])
    markers = ListMarkers(
        inlet,
        [
            (encode_marker({"stimulus_id": 3, "onset": 1.0}), 11.0),
            ('{"stimulus_id": "not a number"}', 12.0),  # malformed for the decoder: kept
            ("[1, 2]", 13.0),  # no JSON object: not recordable
        ],
        interval=1.0,
    )
    latents = _latents_message(node_config, "anything")
    messages = ListMessages([latents])
    node.start(ctx, RecorderInputs(inlet, markers, messages))
    for _ in range(8):
        node.step()
    node.close()
    assert messages.closed and inlet.closed
    with RecordingReader(config.recording_path) as reader:
        values, stamps = reader.volumes()
        recorded_markers = reader.markers()
        headers, _, _ = reader.latents()
    np.testing.assert_array_equal(values, run.volumes[:6])
    assert list(stamps) == [10.0 + i for i in range(6)]
    assert [m for m, _ in recorded_markers] == [
        {"stimulus_id": 3, "onset": 1.0},  # as sent: no type added
        {"stimulus_id": "not a number"},
    ]
    assert headers[0]["model_fingerprint"] == "anything"
    c = node.counters
    assert (c.volumes, c.markers, c.latents, c.rejected) == (6, 2, 1, 1)


def test_each_latents_carries_its_trs_data_quality_and_the_recorder_keeps_it(
    node_config, test_run, tmp_path
):
    run, meta = test_run
    bundle = DecoderBundle.load(node_config.decoder.bundle)
    node, ctx = _decoder(node_config, bundle)
    volumes = run.volumes.copy()
    volumes[20] *= 1.05  # one volume 5% brighter: a global change and a DVARS outlier
    inlet = ListInlet(meta, volumes, [1000.0 + i * run.tr_s for i in range(len(volumes))])
    node.start(ctx, inlet)
    for _ in range(len(volumes) + 2):
        node.step()
    sent = ctx.publisher.of("latents")
    qualities = [Latents.from_message(m).header.quality for m in sent]
    assert len(qualities) == len(volumes) and None not in qualities
    assert qualities[0].tsnr == dict.fromkeys(bundle.heads)  # no window yet
    window = node_config.quality
    offline = OnlineDecoder(bundle, quality_window=window.window_trs, outlier_z=window.max_dvars_z)
    for tr, (volume, quality) in enumerate(zip(volumes, qualities, strict=True)):
        offline.preprocess(volume)
        expected = {k: None if v is None else round(v, 2) for k, v in offline.measures.tsnr.items()}
        assert quality.tsnr == expected, f"TR {tr}"
        if tr >= 10:
            assert all(v > 1.0 for v in quality.tsnr.values())
    flagged = [tr for tr, q in enumerate(qualities) if q.outlier]
    assert flagged[0] == 20 and set(flagged) <= {20, 21}
    assert abs(qualities[20].global_pct - 5.0) < 0.5 and abs(qualities[19].global_pct) < 0.5
    assert qualities[20].dvars_z > window.max_dvars_z

    config = node_config.with_overrides({"recorder.path": str(tmp_path / "rec.h5")})
    recorder, rctx = RecorderNode(config), NodeContext(Collect())
    inlet = ListInlet(meta, volumes[:2], [10.0, 11.0])
    recorder.start(rctx, RecorderInputs(inlet, None, ListMessages(sent)))
    for _ in range(4):
        recorder.step()
    recorder.close()
    with RecordingReader(config.recording_path) as reader:
        headers = reader.latents_headers()
    assert [h["tr"] for h in headers] == list(range(len(volumes)))
    recorded = [q.model_dump(mode="json", exclude_none=True) for q in qualities]
    assert [h["quality"] for h in headers] == recorded
    assert headers[20]["quality"]["outlier"] is True


def test_without_a_bundle_the_recorder_records_a_training_run_for_the_fit(
    node_config, test_run, tmp_path
):
    """A visit's training runs come before any bundle: the recorder records their volumes
    and markers (a latents message that came anyway does not fit and is counted), and the
    fit reads the recording as a training run."""
    from rt_recon.apps.fit_recorded import recording_inputs

    run, meta = test_run
    config = node_config.with_overrides(
        {"recorder.path": str(tmp_path / "train.h5"), "decoder.bundle": None}
    )
    node, ctx = RecorderNode(config), NodeContext(Collect())
    n = 12
    inlet = ListInlet(meta, run.volumes[:n], [10.0 + i * meta.tr_s for i in range(n)])
    marker = {"type": "event", "trial": 0, "onset": 2 * meta.tr_s, "stimulus_id": 3}
    markers = ListMarkers(inlet, [(encode_marker(marker), 10.0 + 2 * meta.tr_s)], interval=1.0)
    messages = ListMessages([_latents_message(node_config, "anything")])
    node.start(ctx, RecorderInputs(inlet, markers, messages))
    for _ in range(n + 2):
        node.step()
    node.close()
    assert node.model is None
    c = node.counters
    assert (c.volumes, c.markers, c.latents, c.rejected) == (n, 1, 0, 1)
    with RecordingReader(config.recording_path) as reader:
        values, _ = reader.volumes()
    np.testing.assert_array_equal(values, run.volumes[:n])
    stimuli = tmp_path / "stimuli"
    stimuli.mkdir()
    (stimuli / "stimuli.tsv").write_text("stimulus_id\tcaption\tfile\n3\ta red circle\t3.png\n")
    second = tmp_path / "train2.h5"  # a fit needs two runs: the same run recorded twice
    second.write_bytes(config.recording_path.read_bytes())
    inputs = recording_inputs([config.recording_path, second], stimuli)
    assert len(inputs.train) == 2
    for fit_run in inputs.train:
        np.testing.assert_array_equal(fit_run.run.volumes, run.volumes[:n])
        assert [int(e["stimulus_id"]) for e in fit_run.run.events] == [3]


def test_the_recorders_step_records_a_run_on_another_grid_in_the_next_segment(
    node_config, test_run, tmp_path
):
    run, meta = test_run
    config = node_config.with_overrides({"recorder.path": str(tmp_path / "rec.h5")})
    node, ctx = RecorderNode(config), NodeContext(Collect())
    v = run.volumes
    other_shape = (meta.shape[0] + 2, *meta.shape[1:])
    other = VolumeStreamMeta(shape=other_shape, affine=meta.affine, tr_s=meta.tr_s, run="8",
                             series="8")  # fmt: skip
    big = np.arange(3 * other.n_channels, dtype=np.float32).reshape(3, -1)
    first = ListInlet(meta, [v[0], v[1]], [0.0, 1.0], [0, 1], end=True)
    streams = [
        ListInlet(other, list(big), [5.0, 6.0, 7.0], [0, 1, 2], end=True),
        ListInlet(VolumeStreamMeta(**{**vars(meta), "run": "9b"}), [v[2], v[3]], [9.0, 10.0],
                  [0, 1]),
    ]  # fmt: skip
    node.reopen = lambda: streams.pop(0) if streams else None
    node.start(ctx, RecorderInputs(first, None, ListMessages([])))
    paths = [node.counters.path]
    for _ in range(10):
        node.step()
        paths.append(node.counters.path)
    node.close()
    seg2, seg3 = tmp_path / "rec.seg-02.h5", tmp_path / "rec.seg-03.h5"
    assert paths[0] == str(config.recording_path) and paths[-1] == str(seg3)
    with SessionReader(config.recording_path) as reader:
        assert reader.paths == [config.recording_path, seg2, seg3]
        segments = [(s.attr("segment"), s.attr("stream")["shape"]) for s in reader.segments]
        assert segments == [
            ({"number": 1, "reason": "start", "first": "rec.h5"}, list(meta.shape)),
            ({"number": 2, "reason": "new grid", "first": "rec.h5"}, list(other_shape)),
            ({"number": 3, "reason": "new grid", "first": "rec.h5"}, list(meta.shape)),
        ]
        (a, _), (b, b_stamps), (c, _) = reader.volumes()  # every volume, none dropped
        np.testing.assert_array_equal(a, v[:2])
        np.testing.assert_array_equal(b, big)
        assert list(b_stamps) == [5.0, 6.0, 7.0]
        np.testing.assert_array_equal(c, v[2:4])
        events = [(s["event"], s.get("next"), s["stream"]["run"]) for s in reader.status()]
        assert events == [
            ("segment_end", "rec.seg-02.h5", "8"), ("run_start", None, "8"),
            ("segment_end", "rec.seg-03.h5", "9b"), ("run_start", None, "9b"),
        ]  # fmt: skip
    c = node.counters
    assert (c.volumes, c.unrecorded, c.error) == (7, 0, None)
    assert first.closed
