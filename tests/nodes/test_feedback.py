"""Sham and yoked feedback (docs/study-designs.md): the nodes' steps in process.

A yoked session's decoder, renderer and recorder run their real per-TR steps on a
synthetic run; the renderer's frames go through the console hub to a participant page.
The participant sees the yoked recording's frames in TR order, while the recording holds
the participant's own decoded latents and the condition; blinded, the console says only
*blinded*.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from rt_recon.acquire.nifti import load_nifti_run
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.decode.online import OnlineDecoder
from rt_recon.display.frames import decode_frame
from rt_recon.display.hub import Hub
from rt_recon.display.messages import ParticipantPicture
from rt_recon.display.state import ConsoleState
from rt_recon.errors import ConfigError, DataError
from rt_recon.nodes.decoder import DecoderNode
from rt_recon.nodes.recorder import RecorderInputs, RecorderNode
from rt_recon.nodes.renderer import RendererNode
from rt_recon.nodes.runner import NodeContext
from rt_recon.protocol import Frame, Latents, VolumeStreamMeta
from rt_recon.record.feedback import file_digest
from rt_recon.record.recording import RecordingReader, RecordingShapes, RecordingWriter
from tests.nodes.test_node_steps import Collect, ListInlet, ListMessages

YOKED_SESSION = "sub02-run3"
N_TRS = 12  # of the participant's run


@pytest.fixture
def test_run(small_dataset):
    """The first TRs of a synthetic test run, and its stream's metadata."""
    files = small_dataset.runs("test")[0]
    run = load_nifti_run(files.bold, files.events)
    meta = VolumeStreamMeta(shape=run.shape, affine=run.affine, tr_s=run.tr_s, session="s", run="9")
    return run.volumes[:N_TRS], run.tr_s, meta


def _write_yoked(path, bundle: DecoderBundle, n_channels: int, n_trs: int, size: int | None = None):
    """An earlier run's recording: distinct random frames of TRs 0 .. n_trs - 1 (run "3" of
    session "other"), an interpolated frame between TRs 1 and 2, and a later run's frame
    (neither of the last two is ever shown)."""
    size = bundle.model.image_size if size is None else size
    shapes = RecordingShapes(
        n_channels=n_channels,
        z_shape=bundle.model.latent_shape,
        c_shape=bundle.model.cond_shape,
        image_shape=(size, size, 3),
    )
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (n_trs, size, size, 3), dtype=np.uint8)
    with RecordingWriter(path, shapes) as writer:
        for tr in range(n_trs):
            writer.add_frame({"session": "other", "run": "3", "tr": tr, "seq": tr}, images[tr])
            if tr == 1:
                between = {"session": "other", "run": "3", "tr": 2, "seq": 2}
                between["interpolated"] = {"from_tr": 1, "t": 0.5}
                writer.add_frame(between, np.zeros_like(images[0]))
        if n_trs:
            writer.add_frame({"session": "other", "run": "4", "tr": 0, "seq": 0}, images[0] // 2)
        writer.flush()
    return images


def _renderer(config) -> RendererNode:
    from rt_recon.render import load_render_model, make_renderer

    model = load_render_model(config.renderer.model)
    node = RendererNode(config, renderer=make_renderer(model, config))
    node.prepare()
    node.ctx = NodeContext(Collect())
    return node


def _session(node_config, tmp_path, feedback: dict, session_id: str = YOKED_SESSION):
    return node_config.with_overrides(
        {
            "session.id": session_id,
            "paths.output_dir": str(tmp_path / "out"),
            "recorder.path": str(tmp_path / "participant.h5"),
            "renderer.write_png": False,
            "feedback": feedback,
        }
    )


def test_a_yoked_runs_participant_sees_the_yoked_frames_in_tr_order_while_the_recording_holds_their_own_latents(  # noqa: E501
    node_config, test_run, tmp_path
):
    volumes, tr_s, meta = test_run
    n = len(volumes)
    bundle = DecoderBundle.load(node_config.decoder.bundle)
    yoked_path = tmp_path / "earlier" / "recording.h5"
    yoked = _write_yoked(yoked_path, bundle, meta.n_channels, n_trs=n - 2)  # 2 TRs short
    config = _session(
        node_config, tmp_path, {"condition": "yoked", "yoked_recording": str(yoked_path)}
    )

    # decoder: the participant's own volumes, its real step
    decoder, dctx = DecoderNode(config, bundle), NodeContext(Collect())
    stamps = [1000.0 + i * tr_s for i in range(n)]
    decoder.start(dctx, ListInlet(meta, volumes, stamps))
    for _ in range(n + 2):
        decoder.step()
    decoder.close()
    latents = dctx.publisher.of("latents")
    assert [Latents.from_message(m).header.tr for m in latents] == list(range(n))

    # renderer: renders every TR, publishes the yoked picture under the participant's header
    renderer = _renderer(config)
    assert renderer.yoked is not None and renderer.yoked.trs == list(range(n - 2))
    for message in latents:
        renderer.process(message, received=2000.0)
    frames = renderer.ctx.publisher.of("frame")
    assert renderer.counters.rendered == n and len(frames) == n

    # the console hub hands them to a participant page, as the server does
    hub = Hub(ConsoleState(config.budgets_ms(), feedback=config.feedback.label()))
    page = hub.connect("participant")
    shown: list[tuple[dict, np.ndarray]] = []
    for k, message in enumerate(frames):
        frame = Frame.from_message(message)
        hub.on_frame(frame.header, frame.image, now=3000.0 + k)
        payload = hub.next_message(page, now=3000.0 + k)
        assert isinstance(payload, bytes)
        shown.append(decode_frame(payload))
        page.ack()
    assert [meta_["tr"] for meta_, _ in shown] == list(range(n))
    for k, (meta_, image) in enumerate(shown):
        # TR k shows the yoked run's TR k; past its end its last frame is held
        np.testing.assert_array_equal(image, yoked[min(k, n - 3)])
        # nothing the participant page is sent names the condition
        assert set(meta_) <= set(ParticipantPicture.model_fields)
        assert "yoked" not in json.dumps(meta_) and "feedback" not in json.dumps(meta_)
    assert renderer.yoked.held == 2
    assert hub.snapshot(now=4000.0)["feedback"] == "yoked"  # the console marks it

    # recorder: the participant's volumes, their own latents, the frames shown
    recorder, rctx = RecorderNode(config), NodeContext(Collect())
    messages = ListMessages(latents + frames)
    inputs = RecorderInputs(ListInlet(meta, volumes, stamps), None, messages)
    recorder.start(rctx, inputs)
    for _ in range(n + 2):
        recorder.step()
    recorder.close()
    offline = OnlineDecoder(bundle)
    own = [offline.update(v) for v in volumes]
    with RecordingReader(config.recording_path) as reader:
        headers, z, c = reader.latents()
        frame_headers, images = reader.frames()
        feedback = reader.attr("feedback")
    assert [h["tr"] for h in headers] == list(range(n))
    np.testing.assert_array_equal(z, np.stack([o["z"] for o in own]))
    np.testing.assert_array_equal(c, np.stack([o["c"] for o in own]))
    assert [h["tr"] for h in frame_headers] == list(range(n))
    np.testing.assert_array_equal(images, np.stack([yoked[min(k, n - 3)] for k in range(n)]))
    assert feedback == {
        "condition": "yoked",
        "yoked_recording": str(yoked_path),
        "yoked_digest": file_digest(yoked_path),
        "blinded": False,
        "study_file": None,
        "study_digest": None,
    }


def test_a_real_run_records_its_condition_and_shows_its_own_pictures(node_config, tmp_path):
    config = _session(node_config, tmp_path, {})
    renderer = _renderer(config)
    assert renderer.yoked is None
    hub = Hub(ConsoleState(config.budgets_ms(), feedback=config.feedback.label()))
    assert hub.snapshot(now=1.0)["feedback"] == "real"
    recorder = RecorderNode(config)
    recorder.prepare()
    assert recorder.feedback.to_json()["condition"] == "real"


def _study(tmp_path, sessions: dict) -> str:
    path = tmp_path / "study" / "study.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": "rt_recon-study", "sessions": sessions}))
    return str(path)


def test_a_blinded_run_shows_the_operator_only_blinded_and_the_recording_has_the_condition(
    node_config, test_run, tmp_path, caplog
):
    volumes, _, meta = test_run
    bundle = DecoderBundle.load(node_config.decoder.bundle)
    yoked_path = tmp_path / "study" / "sub01" / "recording.h5"
    _write_yoked(yoked_path, bundle, meta.n_channels, n_trs=4)
    study = _study(
        tmp_path,
        {YOKED_SESSION: {"condition": "yoked", "yoked_recording": "sub01/recording.h5"}},
    )
    config = _session(node_config, tmp_path, {"study_file": study})

    # the operator's side: the config and the console's state say nothing but "blinded"
    assert json.loads(config.to_json())["feedback"] == {
        "condition": None,
        "yoked_recording": None,
        "study_file": study,
    }
    hub = Hub(ConsoleState(config.budgets_ms(), feedback=config.feedback.label()))
    state = hub.snapshot(now=1.0)
    assert state["feedback"] == "blinded" and "yoked" not in json.dumps(state)

    # the renderer yokes (relative path: from the study file's folder) without logging it,
    # even when the yoked run is too short
    caplog.set_level(logging.DEBUG)
    renderer = _renderer(config)
    assert renderer.yoked is not None
    renderer.yoked.frame(10)
    assert renderer.yoked.held == 1
    assert not [r for r in caplog.records if "yoked" in r.getMessage()]

    # the recording stores the true condition
    recorder, rctx = RecorderNode(config), NodeContext(Collect())
    inputs = RecorderInputs(ListInlet(meta, volumes[:2], [10.0, 11.0]), None, ListMessages([]))
    recorder.start(rctx, inputs)
    for _ in range(3):
        recorder.step()
    recorder.close()
    with RecordingReader(config.recording_path) as reader:
        feedback = reader.attr("feedback")
    assert feedback["condition"] == "yoked" and feedback["blinded"] is True
    assert feedback["yoked_recording"] == str(yoked_path.resolve())
    assert feedback["study_digest"] == file_digest(tmp_path / "study" / "study.json")


def test_a_study_file_without_the_session_is_a_config_error(node_config, tmp_path):
    study = _study(tmp_path, {"sub09": {"condition": "real"}})
    config = _session(node_config, tmp_path, {"study_file": study})
    with pytest.raises(ConfigError, match=r"no entry for session.id 'sub02-run3'.*sub09"):
        RecorderNode(config).prepare()


@pytest.mark.parametrize(
    "what, match",
    [
        ("missing", "yoked recording .* was not found"),
        ("corrupt", "cannot read the yoked recording: .*not a readable HDF5"),
        ("no frames", "has no frames"),
        ("other pictures", r"has frames of \(8, 8, 3\), this renderer's are"),
    ],
)
def test_a_bad_yoked_recording_is_a_clear_error_before_the_run(
    node_config, test_run, tmp_path, what, match
):
    _, _, meta = test_run
    bundle = DecoderBundle.load(node_config.decoder.bundle)
    path = tmp_path / "earlier.h5"
    if what == "corrupt":
        path.write_bytes(b"not a recording" * 100)
    elif what == "no frames":
        _write_yoked(path, bundle, meta.n_channels, n_trs=0)
    elif what == "other pictures":
        _write_yoked(path, bundle, meta.n_channels, n_trs=3, size=8)
    config = _session(node_config, tmp_path, {"condition": "yoked", "yoked_recording": str(path)})
    with pytest.raises(DataError, match=match):
        _renderer(config)


@pytest.mark.parametrize(
    "feedback, match",
    [
        ({"condition": "yoked"}, "set feedback.yoked_recording"),
        ({"yoked_recording": "x.h5"}, "condition is real"),
        ({"study_file": "s.json", "condition": "yoked"}, "expected no feedback.condition"),
    ],
)
def test_feedback_config_errors_say_what_to_set(node_config, feedback, match):
    with pytest.raises(ConfigError, match=match):
        node_config.with_overrides({"feedback": feedback})


def test_yoked_feedback_refuses_pictures_between_trs(node_config):
    with pytest.raises(ConfigError, match=r"set renderer\.interpolate_fps to 0"):
        node_config.with_overrides(
            {"feedback": {"study_file": "s.json"}, "renderer.interpolate_fps": 10.0}
        )


@pytest.mark.slow
def test_a_yoked_renderer_process_publishes_the_yoked_frames_over_zeromq(
    node_config, node_processes, test_run, tmp_path
):
    """The same through a real renderer process and real ZeroMQ sockets: latents of TRs
    0..5 in, the yoked recording's frames of TRs 0..5 out, in TR order."""
    from rt_recon.protocol import TOPIC_FRAME, TOPIC_LATENTS
    from rt_recon.transport.zmq import Publisher, Subscriber
    from tests.nodes._latents import latents_header

    _, _, meta = test_run
    bundle = DecoderBundle.load(node_config.decoder.bundle)
    yoked_path = tmp_path / "earlier.h5"
    yoked = _write_yoked(yoked_path, bundle, meta.n_channels, n_trs=6)
    config = _session(
        node_config, tmp_path, {"condition": "yoked", "yoked_recording": str(yoked_path)}
    ).with_overrides({"renderer.wait_for_subscribers": 1})
    rng = np.random.default_rng(1)
    shown = []
    with Publisher(config.decoder.latents_endpoint) as latents:
        renderer = node_processes.node("renderer", config)
        with Subscriber(config.renderer.frames_endpoint, [TOPIC_FRAME]) as frames:
            latents.wait_for_subscribers(1, TOPIC_LATENTS, timeout=60)
            for tr in range(6):
                arrays = {
                    "z": rng.standard_normal(bundle.model.latent_shape).astype(np.float32),
                    "c": rng.standard_normal(bundle.model.cond_shape).astype(np.float32),
                }
                latents.send(TOPIC_LATENTS, latents_header(bundle, tr).to_json(), arrays)
                message = frames.receive(timeout=30)  # one at a time: none skipped as stale
                assert message is not None, f"no frame for TR {tr}"
                shown.append(Frame.from_message(message))
        renderer.wait_for_line("feedback condition: yoked", timeout=5)
    assert [f.header.tr for f in shown] == list(range(6))
    for tr, frame in enumerate(shown):
        np.testing.assert_array_equal(frame.image, yoked[tr])
