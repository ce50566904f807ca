"""The renderer node: latest latents in, one frame out per render.

It loads the model first (a missing or incomplete model, or a decoder
bundle fitted for another model, fails before any socket opens), then
renders the newest latents message whenever one is waiting; older ones are
skipped and counted, so a slow renderer never falls behind. A latents
message decoded for another render model (its ``model_fingerprint`` is not
this model's) is skipped, counted (``foreign_model``) and logged, never
rendered. Frames go out as :class:`~rt_recon.protocol.Frame` messages
(``image``: ``(H, W, 3)`` uint8 RGB) and, optionally, as PNG files.

Heartbeats come from the runner's own thread (:mod:`rt_recon.nodes.runner`),
so a render of several seconds does not silence the node.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pylsl
from PIL import Image

from rt_recon.config import SessionConfig
from rt_recon.decode.bundle import DecoderBundle, ModelSpec
from rt_recon.errors import ProtocolError, ShapeMismatchError
from rt_recon.nodes.runner import Node, NodeContext, run_node
from rt_recon.protocol import (
    TOPIC_FRAME,
    TOPIC_LATENTS,
    Frame,
    FrameHeader,
    Latents,
    Message,
    RendererCounters,
)
from rt_recon.render import Img2ImgRenderer, load_render_model, make_renderer, resolve_model_path
from rt_recon.transport.zmq import Subscriber

log = logging.getLogger(__name__)


def frames_dir(config: SessionConfig) -> Path:
    return config.paths.output_dir / "frames"


class RendererNode(Node):
    """Latents in, frames out (see the module docstring).

    ``renderer``: a ready :class:`~rt_recon.render.Img2ImgRenderer` to use instead of
    the one the config describes (tests pass one with a slowed executor).
    """

    name = "renderer"
    working_state = "running"

    def __init__(self, config: SessionConfig, renderer: Img2ImgRenderer | None = None):
        self.config = config
        self.renderer = renderer
        self.counters = RendererCounters()
        self.ctx: NodeContext | None = None
        self.latents: Subscriber | None = None
        self._foreign: set[str] = set()
        self._out_dir = frames_dir(config)

    @property
    def endpoint(self) -> str:
        return self.config.renderer.frames_endpoint

    @property
    def subscribers(self) -> tuple[str, int, float]:
        rc = self.config.renderer
        return TOPIC_FRAME, rc.wait_for_subscribers, rc.subscriber_timeout_s

    def prepare(self) -> None:
        """Load the model (and check the session's bundle was fitted for it), warm up."""
        if self.renderer is None:
            rc = self.config.renderer
            if rc.threads:
                import torch

                torch.set_num_threads(rc.threads)
            path = resolve_model_path(self.config)
            model = load_render_model(
                path,
                device=rc.device,
                dtype=rc.dtype,
                tiny_decoder=rc.tiny_decoder,
                channels_last=rc.use_channels_last(),
                with_text=rc.guidance_scale > 1.0,  # guidance needs the empty caption's c
            )
            self._check_bundle(ModelSpec.from_json(model.describe()), str(path))
            self.renderer = make_renderer(model, self.config)
            self.renderer.warm_up()  # the first calls allocate and pick kernels
        self.model = ModelSpec.from_json(self.renderer.model.describe())
        if self.config.renderer.write_png:
            self._out_dir.mkdir(parents=True, exist_ok=True)

    def _check_bundle(self, model: ModelSpec, where: str) -> None:
        bundle = self.config.decoder.bundle
        if bundle is not None and Path(bundle).is_file():
            DecoderBundle.read_specs(bundle)[1].check(model, where)

    def open(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.latents = Subscriber(
            self.config.decoder.latents_endpoint, [TOPIC_LATENTS], curve=self.config.security
        )
        assert self.renderer is not None
        log.info(
            "rendering %d UNet step(s) per frame from %s",
            self.renderer.n_unet_calls,
            self.config.decoder.latents_endpoint,
        )

    def step(self) -> None:
        """Take the newest latents (waiting up to 0.1 s) and render them."""
        assert self.latents is not None, "open() first"
        got = self.latents.receive_latest(timeout=0.1)
        self.counters.malformed += got.malformed
        self.counters.skipped_stale += got.skipped
        if got.message is not None:
            self.process(got.message, pylsl.local_clock())

    def process(self, message: Message, received: float) -> Frame | None:
        """Render one decoded latents message and publish its frame; None if skipped."""
        assert self.ctx is not None and self.renderer is not None
        counters = self.counters
        try:
            latents = Latents.from_message(message)
        except ProtocolError as exc:
            counters.malformed += 1
            log.warning("skipped a latents message: %s", exc)
            return None
        header = latents.header
        if header.model_fingerprint != self.model.fingerprint:
            counters.foreign_model += 1
            if header.model_fingerprint not in self._foreign:
                self._foreign.add(header.model_fingerprint)
                log.error(
                    "skipping latents decoded for render model %s (TR %d); this renderer's "
                    "model is %s: refit the bundle for it, or render with that model",
                    header.model_fingerprint, header.tr, self.model.fingerprint,
                )  # fmt: skip
            return None
        try:
            # a new run restarts latent blending
            image = self.renderer.render(latents.z, latents.c, run_id=(header.session, header.run))
        except ShapeMismatchError as exc:
            counters.rejected += 1
            log.warning("skipped latents seq %d (TR %d): %s", header.seq, header.tr, exc)
            return None
        rendered = pylsl.local_clock()
        frame = Frame(
            FrameHeader.from_latents(
                header,
                skipped_total=counters.skipped_stale,
                render_received=received,
                rendered=rendered,
                published=pylsl.local_clock(),
            ),
            image,
        )
        self.ctx.publisher.send_frames(frame.encode())
        counters.rendered += 1
        counters.tr = header.tr
        if self.config.renderer.write_png:
            self._save_png(image, self._out_dir / f"tr-{header.tr:05d}.png")
        return frame

    def _save_png(self, image: np.ndarray, path: Path) -> None:
        """Save a frame as PNG; a disk that cannot take it is logged (once), never fatal."""
        try:
            Image.fromarray(image).save(path)
        except OSError as exc:
            if not self.counters.png_failed:
                log.error("cannot save frames as PNG (%s: %s); rendering goes on", path, exc)
            self.counters.png_failed += 1
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)  # no half-written picture left behind

    def close(self) -> None:
        if self.latents is not None:
            self.latents.close()
            self.latents = None


def run_renderer(config: SessionConfig, stop: threading.Event) -> Any:
    """Run the renderer node until ``stop`` is set; returns its counters."""
    return run_node(RendererNode(config), stop, config.security)
