"""Each latents message carries its TR's confidence (the decoder's, as offline decoding gives
it), the recorder keeps it, and the frame header passes it on; a bundle without one sends
none."""

from __future__ import annotations

import pytest

from rt_recon.acquire.nifti import load_nifti_run
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.decode.online import OnlineDecoder
from rt_recon.errors import ProtocolError
from rt_recon.nodes.decoder import DecoderNode
from rt_recon.nodes.recorder import RecorderInputs, RecorderNode
from rt_recon.nodes.runner import NodeContext
from rt_recon.protocol import FrameHeader, Latents, LatentsHeader, VolumeStreamMeta
from rt_recon.record.recording import RecordingReader
from tests.nodes._latents import latents_header
from tests.nodes.test_node_steps import Collect, ListInlet, ListMessages

N_TRS = 16


def _decode(node_config, bundle, volumes, meta) -> tuple[list[Latents], list]:
    node, ctx = DecoderNode(node_config, bundle), NodeContext(Collect())
    node.start(ctx, ListInlet(meta, volumes, [1000.0 + i * meta.tr_s for i in range(len(volumes))]))
    for _ in range(len(volumes) + 2):
        node.step()
    node.close()
    messages = ctx.publisher.of("latents")
    return [Latents.from_message(m) for m in messages], messages


def test_latents_carry_the_offline_confidence_and_the_recorder_keeps_it(
    node_config, small_dataset, tmp_path
):
    files = small_dataset.runs("test")[0]
    run = load_nifti_run(files.bold, files.events)
    meta = VolumeStreamMeta(shape=run.shape, affine=run.affine, tr_s=run.tr_s, session="s", run="9")
    bundle = DecoderBundle.load(node_config.decoder.bundle)
    assert bundle.confidence is not None  # the fit stores one
    volumes = run.volumes[:N_TRS]
    sent, messages = _decode(node_config, bundle, volumes, meta)
    offline = OnlineDecoder(bundle)
    expected = []
    for volume in volumes:
        offline.update(volume)
        expected.append(round(offline.confidence, 4))
    assert [m.header.confidence for m in sent] == expected
    assert all(0.0 <= c <= 1.0 for c in expected) and len(set(expected)) > 1

    config = node_config.with_overrides({"recorder.path": str(tmp_path / "rec.h5")})
    recorder, rctx = RecorderNode(config), NodeContext(Collect())
    recorder.start(rctx, RecorderInputs(ListInlet(meta, volumes[:2], [10.0, 11.0]), None,
                                        ListMessages(messages)))  # fmt: skip
    for _ in range(4):
        recorder.step()
    recorder.close()
    with RecordingReader(config.recording_path) as reader:
        headers = reader.latents_headers()
    assert [h["confidence"] for h in headers] == expected

    frame = FrameHeader.from_latents(sent[5].header, 0, 1.0, 1.1, 1.2)
    assert frame.confidence == expected[5]
    assert FrameHeader.from_json(frame.to_json()).confidence == expected[5]


def test_a_bundle_without_confidence_sends_none(node_config, small_dataset, tmp_path):
    files = small_dataset.runs("test")[0]
    run = load_nifti_run(files.bold, files.events)
    meta = VolumeStreamMeta(shape=run.shape, affine=run.affine, tr_s=run.tr_s, session="s", run="9")
    bundle = DecoderBundle.load(node_config.decoder.bundle)
    bundle.confidence = None  # as a bundle fitted before the confidence loads
    sent, _ = _decode(node_config, bundle, run.volumes[:4], meta)
    assert [m.header.confidence for m in sent] == [None] * 4
    assert "confidence" not in sent[0].header.to_json()


@pytest.mark.parametrize("value", [-0.01, 1.5, "0.5", float("nan")])
def test_the_header_refuses_a_confidence_outside_0_to_1(node_config, value):
    bundle = DecoderBundle.load(node_config.decoder.bundle)
    good = latents_header(bundle).to_json()
    for ok in (0.0, 0.5, 1.0, 1, None):
        assert LatentsHeader.from_json({**good, "confidence": ok}).confidence == ok
    with pytest.raises(ProtocolError, match="confidence"):
        LatentsHeader.from_json({**good, "confidence": value})
