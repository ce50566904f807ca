"""An asap replay and a real-time replay of one run give every event the same onset TR.

Real LSL streams, a real decoder node (in a thread, with the real runner and ZeroMQ),
markers without ``type`` as a stimulus program might send them.
"""

from __future__ import annotations

import threading

import pytest

from rt_recon.acquire.nifti import load_nifti_run
from rt_recon.nodes.decoder import DecoderNode
from rt_recon.nodes.ready import ReadyWatcher
from rt_recon.nodes.replay import DecoderAck, replay
from rt_recon.protocol import TOPIC_LATENTS, Latents, onset_tr_from_seconds
from rt_recon.transport.zmq import Subscriber
from tests.nodes._threads import NodeThread

pytestmark = pytest.mark.slow


def _onsets(node_config, run, pace: str) -> dict[int, int]:
    """``{stimulus_id: onset TR}`` as the decoder's trial tracker placed them."""
    config = node_config.with_overrides({"decoder.mode": "trial"})
    stream = config.stream
    onsets: dict[int, int] = {}
    with (
        Subscriber(config.decoder.latents_endpoint, [TOPIC_LATENTS]) as latents,
        NodeThread(DecoderNode(config)),
    ):
        ready = ReadyWatcher([config.decoder.latents_endpoint], stream.source_id)
        ack = DecoderAck(config.decoder.latents_endpoint, config.session.id, "01")
        done = threading.Event()

        def source() -> None:
            try:
                replay(
                    run, name=stream.name, source_id=stream.source_id,
                    markers_name=stream.markers_name, markers_source_id=stream.markers_source_id,
                    speed=8.0, session=config.session.id, run_id="01", consumer_timeout=30,
                    ready=ready, pace=pace, ack=ack if pace == "asap" else None,
                )  # fmt: skip
            finally:
                done.set()

        thread = threading.Thread(target=source, daemon=True)
        thread.start()
        last = len(run.volumes) - 1
        while True:
            message = latents.receive(timeout=15)
            assert message is not None, f"{pace}: no latents for 15 s"
            header = Latents.from_message(message).header
            if header.trial is not None:
                onsets.setdefault(header.trial.stimulus_id, header.trial.onset_tr)
            if header.tr >= last:
                break
        thread.join(timeout=10)
        ack.close()
        ready.close()
    return onsets


def test_asap_and_real_time_replays_give_every_event_the_same_onset_tr(node_config, small_dataset):
    files = small_dataset.runs("test")[0]
    run = load_nifti_run(files.bold, files.events)
    for event in run.events:
        event.pop("type", None)  # as a stimulus program that omits it
    realtime = _onsets(node_config, run, "realtime")
    asap = _onsets(node_config, run, "asap")
    expected = {int(e["stimulus_id"]): onset_tr_from_seconds(e["onset"], run.tr_s)
                for e in run.events if "stimulus_id" in e}  # fmt: skip
    assert realtime == expected
    assert asap == realtime
