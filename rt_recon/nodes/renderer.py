"""The renderer node: latest latents in, one frame out per render.

It loads the model first (a missing or incomplete model, or a decoder
bundle fitted for another model, fails before any socket opens), then
renders the newest latents message whenever one is waiting; older ones are
skipped and counted, so a slow renderer never falls behind, except the TR each
trial is scored on (:func:`~rt_recon.protocol.is_scored_tr`): that one is rendered
before the newest, so a renderer behind its decoder still gives every trial its
frame (a trial without one counts as a failure), at one extra render per trial; of
several such TRs waiting (a renderer far behind) only the last is kept, so the
renderer never falls further behind. A latents
message decoded for another render model (its ``model_fingerprint`` is not
this model's) is skipped, counted (``foreign_model``) and logged, never
rendered. Frames go out as :class:`~rt_recon.protocol.Frame` messages
(``image``: ``(H, W, 3)`` uint8 RGB) and, optionally, as PNG files.

Heartbeats come from the runner's own thread (:mod:`rt_recon.nodes.runner`),
so a render of several seconds does not silence the node.

Pictures between TRs (``renderer.interpolate_fps`` > 0). Once a TR's picture is
rendered, the node holds it back for ``renderer.interpolate_ms`` and meanwhile
publishes ``n - 1`` frames (``n = round(interpolate_ms * interpolate_fps / 1000)``),
frame ``j`` at ``j / interpolate_fps`` s, rendered from the start point
(:class:`~rt_recon.render.StartPoint`: init latent and ``c``) ``t = j / n`` of the
way from the previous TR's to this TR's; then the TR's own frame. Each of those
frames is an ordinary ``frame`` message with the TR's header and ``interpolated``
(``from_tr``, ``t``; docs/protocol.md 3.2), so a consumer tells it from a TR's picture
(:func:`~rt_recon.protocol.is_interpolated`). Frames are rendered ahead of their
time and published when due; a renderer slower than the rate skips the frames it
cannot render in time (judged by its last render's time), so the TR's own frame is
not later than ``interpolate_ms``.
Latents of a new TR cut the interpolation short: the held TR frame goes out at
once, then the new TR's (which interpolates from it). A TR's frame is never
dropped for interpolated ones. The first TR of a run, and the first after a
renderer (re)start, are published at once.

Yoked feedback (``feedback``, docs/study-designs.md). In a yoked run the node still
renders every TR from the participant's own latents, so its timing is a real run's, but
the frame it publishes for TR ``k`` carries the yoked recording's TR ``k`` picture
(:class:`~rt_recon.record.feedback.YokedFrames`) under the participant's own header: the
participant page, the console and the recorder see an ordinary frame, and nothing in it
names the condition. The session's condition is logged only when it is not blinded.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
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
    Interpolation,
    Latents,
    LatentsHeader,
    Message,
    RendererCounters,
    is_scored_tr,
)
from rt_recon.record.feedback import YokedFrames, resolve_feedback
from rt_recon.render import (
    Img2ImgRenderer,
    StartPoint,
    load_render_model,
    make_renderer,
    resolve_model_path,
)
from rt_recon.transport.zmq import Subscriber

log = logging.getLogger(__name__)


def is_latents_scored_tr(message: Message) -> bool:
    """A latents message that a trial is scored on: kept when newer ones are waiting."""
    return is_scored_tr(message.header)


def frames_dir(config: SessionConfig) -> Path:
    return config.paths.output_dir / "frames"


@dataclass
class _TrPicture:
    """A TR's rendered picture, with what its frame header needs."""

    latents: LatentsHeader
    image: np.ndarray
    received: float  # LSL clock: the latents taken off the socket
    rendered: float  # LSL clock: the picture done


@dataclass
class _Morph:
    """A TR's picture held back while frames interpolated toward it go out.

    Frame ``j`` (1 .. n - 1) starts ``j / n`` of the way from ``a`` (TR ``from_tr``'s start
    point) to ``b`` (this TR's) and is due at ``began + j * period``; frame ``n``, the TR's
    own, at ``began + n * period``. ``ready``: the next frame, rendered ahead of its time.
    """

    picture: _TrPicture
    from_tr: int
    a: StartPoint
    b: StartPoint
    began: float
    n: int
    period: float
    render_s: float  # what a render takes here: the last one's time
    next_j: int = 0
    ready: tuple[np.ndarray, float] | None = None  # (image, rendered) of frame next_j

    def __post_init__(self) -> None:
        self.next_j = min(self.n, max(1, self._reachable(self.began)))

    def due(self, j: int) -> float:
        return self.began + j * self.period

    def _reachable(self, now: float) -> int:
        """The first frame a render begun at ``now`` finishes in time for."""
        return math.ceil((now + self.render_s - self.began) / self.period - 1e-9)

    def advance(self, now: float) -> None:
        """Frame ``next_j`` went out at ``now``: the next is the first a render can still
        make in time (a slow renderer skips the others), the TR's own at the latest."""
        self.next_j = min(self.n, max(self.next_j + 1, self._reachable(now)))
        self.ready = None


class RendererNode(Node):
    """Latents in, frames out (see the module docstring).

    ``renderer``: a ready :class:`~rt_recon.render.Img2ImgRenderer` to use instead of
    the one the config describes (tests pass one with a slowed executor). ``clock``: the
    LSL clock (tests pass their own to step through interpolated frames).
    """

    name = "renderer"
    working_state = "running"

    def __init__(
        self,
        config: SessionConfig,
        renderer: Img2ImgRenderer | None = None,
        clock: Callable[[], float] = pylsl.local_clock,
    ):
        self.config = config
        self.renderer = renderer
        self.clock = clock
        self.counters = RendererCounters()
        self.ctx: NodeContext | None = None
        self.latents: Subscriber | None = None
        self._foreign: set[str] = set()
        self._out_dir = frames_dir(config)
        #: The last TR frame's run, TR and start point: where interpolation starts from.
        self._last: tuple[Hashable, int, StartPoint] | None = None
        self._morph: _Morph | None = None
        #: A yoked run's source frames (None: the participant's own pictures are shown).
        self.yoked: YokedFrames | None = None

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
        self._prepare_feedback()
        if self.config.renderer.write_png:
            self._out_dir.mkdir(parents=True, exist_ok=True)

    def _prepare_feedback(self) -> None:
        """Load a yoked run's source frames (a missing or unreadable recording, or one of
        other pictures, fails here, before any socket opens)."""
        feedback = resolve_feedback(self.config, digest=False)
        if feedback.condition == "yoked":
            assert feedback.yoked_recording is not None
            size = self.model.image_size
            self.yoked = YokedFrames(
                feedback.yoked_recording, (size, size, 3), quiet=feedback.blinded
            )
        if not feedback.blinded:
            log.info("feedback condition: %s", feedback.condition)
            if self.yoked is not None:
                log.info(
                    "showing the frames of %s (TRs %d-%d) instead of the participant's own",
                    self.yoked.path, self.yoked.trs[0], self.yoked.trs[-1],
                )  # fmt: skip

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
        rc = self.config.renderer
        if rc.interpolate_fps > 0:
            log.info(
                "interpolating between TRs: %g frames/s over %g ms before each TR's own frame",
                rc.interpolate_fps,
                rc.interpolate_ms,
            )

    def step(self) -> None:
        """Take the newest latents and render them; between TRs, the interpolated frames
        (rendered ahead, published when due). Blocks at most about 0.1 s (plus a render)."""
        assert self.latents is not None, "open() first"
        morph = self._morph
        to_render = morph is not None and morph.ready is None and morph.next_j < morph.n
        if morph is None:
            wait = 0.1
        elif to_render:
            wait = 0.0  # a new TR first, else render the next frame ahead of its time
        else:
            wait = min(0.1, max(0.0, morph.due(morph.next_j) - self.clock()))
        got = self.latents.receive_latest(timeout=wait, keep=is_latents_scored_tr)
        self.counters.malformed += got.malformed
        self.counters.skipped_stale += got.skipped
        if got.message is not None:
            # the last scored TR kept (one: a renderer far behind, as in an asap replay,
            # would never catch up rendering them all), then the newest
            for message in [*got.kept[-1:], got.message]:
                self._finish_morph()  # the held TR frame first, then the new TR's
                self.process(message, self.clock())
        elif morph is not None and to_render:
            morph.ready = self._render_between(morph)
        elif morph is not None and self.clock() >= morph.due(morph.next_j):
            self._publish_due(morph)

    def process(self, message: Message, received: float) -> Frame | None:
        """Render one decoded latents message and publish its frame; None if skipped, or
        held back while interpolated frames go out (:meth:`step` publishes it when due)."""
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
        run = (header.session, header.run)
        try:
            # a new run restarts latent blending
            image = self.renderer.render(latents.z, latents.c, run_id=run)
        except ShapeMismatchError as exc:
            counters.rejected += 1
            log.warning("skipped latents seq %d (TR %d): %s", header.seq, header.tr, exc)
            return None
        picture = _TrPicture(header, image, received, self.clock())
        last, start = self._last, self.renderer.last_start
        self._last = None if start is None else (run, header.tr, start)
        rc = self.config.renderer
        n = rc.interpolation_steps()
        if n < 2 or last is None or start is None or last[0] != run or last[1] >= header.tr:
            return self._publish_tr(picture)  # no interpolation, or nothing to start from
        period, render_s = 1.0 / rc.interpolate_fps, picture.rendered - received
        self._morph = _Morph(
            picture, last[1], last[2], start, picture.rendered, n, period, render_s
        )
        return None

    def _publish_tr(self, picture: _TrPicture) -> Frame:
        """Publish a TR's own frame (and save it as PNG)."""
        assert self.ctx is not None
        header = picture.latents
        if self.yoked is not None:  # the participant's TR, another recording's picture
            picture.image = self.yoked.frame(header.tr)
        frame = Frame(
            FrameHeader.from_latents(
                header,
                skipped_total=self.counters.skipped_stale,
                render_received=picture.received,
                rendered=picture.rendered,
                published=self.clock(),
            ),
            picture.image,
        )
        self.ctx.publisher.send_frames(frame.encode())
        self.counters.rendered += 1
        self.counters.tr = header.tr
        if self.config.renderer.write_png:
            self._save_png(picture.image, self._out_dir / f"tr-{header.tr:05d}.png")
        return frame

    def _render_between(self, morph: _Morph) -> tuple[np.ndarray, float]:
        """Frame ``morph.next_j``'s picture and when it was done."""
        assert self.renderer is not None
        began = self.clock()
        image = self.renderer.render_between(morph.a, morph.b, morph.next_j / morph.n)
        done = self.clock()
        morph.render_s = done - began
        return image, done

    def _publish_due(self, morph: _Morph) -> None:
        """Publish the frame that is due: an interpolated one, or at the end the TR's own."""
        assert self.ctx is not None
        if morph.next_j >= morph.n:
            self._finish_morph()
            return
        image, rendered = morph.ready if morph.ready is not None else self._render_between(morph)
        picture = morph.picture
        header = FrameHeader.from_latents(
            picture.latents,
            skipped_total=self.counters.skipped_stale,
            render_received=picture.received,
            rendered=rendered,
            published=self.clock(),
            interpolated=Interpolation(from_tr=morph.from_tr, t=morph.next_j / morph.n),
        )
        self.ctx.publisher.send_frames(Frame(header, image).encode())
        self.counters.interpolated += 1
        morph.advance(self.clock())

    def _finish_morph(self) -> None:
        """Publish the held TR frame now, if there is one (its interpolation ends here)."""
        morph, self._morph = self._morph, None
        if morph is not None:
            self._publish_tr(morph.picture)

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
        if self.ctx is not None:
            self._finish_morph()  # a TR's frame is never lost to its interpolation
        if self.latents is not None:
            self.latents.close()
            self.latents = None


def run_renderer(config: SessionConfig, stop: threading.Event) -> Any:
    """Run the renderer node until ``stop`` is set; returns its counters."""
    return run_node(RendererNode(config), stop, config.security)
