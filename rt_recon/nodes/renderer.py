"""The renderer node: latest latents in, one frame out per render.

It loads the model first (a missing or incomplete model fails before any
socket opens), then renders the newest latents message whenever one is
waiting; older ones are skipped and counted, so a slow renderer never falls
behind. Frames go out as ``[b"frame", header, image]`` (``image``:
``(H, W, 3)`` uint8 RGB) and, optionally, as PNG files.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pylsl
import torch
from PIL import Image

from rt_recon.config import SessionConfig
from rt_recon.errors import ShapeMismatchError
from rt_recon.nodes._signals import waiting
from rt_recon.nodes._status import StatusPublisher
from rt_recon.protocol import TOPIC_FRAME, TOPIC_LATENTS
from rt_recon.render.embedded import resolve_model_path
from rt_recon.render.factory import make_renderer
from rt_recon.render.model import load_render_model
from rt_recon.transport.zmq import Publisher, Subscriber

log = logging.getLogger(__name__)

_PASSED_ON = (
    "seq",
    "tr",
    "session",
    "run",
    "volume_crc32",
    "warming_up",
    "missed_before",
    "lag_trs",
    "motion",
    "fd",
    "spike",
    "mode",
    "trial",
)


@dataclass
class RendererStats:
    rendered: int = 0
    skipped_stale: int = 0
    rejected: int = 0
    malformed: int = 0
    png_failed: int = 0  # frames published but not saved as PNG (disk full, ...)


def _save_png(image: np.ndarray, path: Path, stats: RendererStats) -> None:
    """Save a frame as PNG; a disk that cannot take it is logged (once), never fatal."""
    try:
        Image.fromarray(image).save(path)
    except OSError as exc:
        if not stats.png_failed:
            log.error("cannot save frames as PNG (%s: %s); rendering goes on", path, exc)
        stats.png_failed += 1
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)  # no half-written picture left behind


def frames_dir(config: SessionConfig) -> Path:
    return config.paths.output_dir / "frames"


def run_renderer(config: SessionConfig, stop: threading.Event) -> RendererStats:
    """Run until ``stop`` is set; returns what happened."""
    rc = config.renderer
    if rc.threads:
        torch.set_num_threads(rc.threads)
    model = load_render_model(
        resolve_model_path(config),
        device=rc.device,
        dtype=rc.dtype,
        tiny_decoder=rc.tiny_decoder,
        channels_last=rc.use_channels_last(),
    )
    renderer = make_renderer(model, config)
    renderer.render(*_zeros(model))  # warm-up: first calls allocate and pick kernels
    out_dir = frames_dir(config)
    if rc.write_png:
        out_dir.mkdir(parents=True, exist_ok=True)
    stats = RendererStats()
    with Publisher(rc.frames_endpoint, curve=config.security) as pub:
        log.info("publishing frames and status on %s", pub.endpoint)
        status = StatusPublisher(pub, "renderer")
        pub.wait_for_subscribers(
            rc.wait_for_subscribers,
            TOPIC_FRAME,
            rc.subscriber_timeout_s,
            on_wait=waiting(stop, lambda: status.beat("waiting_for_subscribers")),
        )
        with Subscriber(
            config.decoder.latents_endpoint, [TOPIC_LATENTS], curve=config.security
        ) as sub:
            log.info(
                "rendering %d UNet step(s) per frame from %s",
                renderer.n_unet_calls,
                config.decoder.latents_endpoint,
            )
            last_tr = -1
            while not stop.is_set():
                status.beat("running", tr=last_tr, **asdict(stats))
                got = sub.receive_latest(timeout=0.1)
                stats.malformed += got.malformed
                stats.skipped_stale += got.skipped
                message = got.message
                if message is None:
                    continue
                received = pylsl.local_clock()
                z, c = message.arrays.get("z"), message.arrays.get("c")
                try:
                    if z is None or c is None:
                        raise ShapeMismatchError(
                            "latents message needs buffers 'z' and 'c', "
                            f"found {sorted(message.arrays)}"
                        )
                    run_id = (message.header.get("session"), message.header.get("run"))
                    image = renderer.render(z, c, run_id=run_id)  # a new run resets blending
                except ShapeMismatchError as exc:
                    stats.rejected += 1
                    log.warning(
                        "skipped latents seq %s (TR %s): %s",
                        message.header.get("seq"),
                        message.header.get("tr"),
                        exc,
                    )
                    continue
                rendered = pylsl.local_clock()
                header = {k: message.header[k] for k in _PASSED_ON if k in message.header}
                header["skipped_total"] = stats.skipped_stale
                header["times"] = {
                    **message.times,
                    "render_received": received,
                    "rendered": rendered,
                }
                header["times"]["published"] = pylsl.local_clock()
                pub.send(TOPIC_FRAME, header, {"image": image})
                stats.rendered += 1
                last_tr = int(header.get("tr", -1))
                if rc.write_png:
                    _save_png(image, out_dir / f"tr-{int(header['tr']):05d}.png", stats)
        status.beat("stopped", tr=last_tr, **asdict(stats))
    log.info("renderer stopped: %s", stats)
    return stats


def _zeros(model) -> tuple:
    import numpy as np

    return (
        np.zeros(model.latent_shape, dtype=np.float32),
        np.zeros(model.cond_shape, dtype=np.float32),
    )
