"""``rt-recon console``: the web server of the operator console and the participant display.

Starlette on uvicorn. Pages and scripts come from ``static/``; pictures go
to pages as binary WebSocket messages (:mod:`rt_recon.display.frames`),
latest-only (:mod:`rt_recon.display.hub`); the console page also gets the
console state as JSON about four times a second.

Routes::

    /                   index (links to both pages)
    /participant        the participant display: the newest picture, full-screen
    /console            the operator console
    /static/{name}      scripts and styles
    /stimuli/{id}.png   true stimulus pictures (when console.dataset is set)
    /api/state          the console state as JSON (what the console page draws)
    /api/record         POST {"command": "start" | "stop"}: recording on or off (record_control)
    /ws/participant     pictures, and {"type": "waiting"} when there is none to show
    /ws/console         pictures with their pairing (on connecting, the last eight first),
                        and the console state
    /ws/present         a training run to present (``rt-recon present``; presenter.py), or
                        {"type": "off"} when there is none
    /present/{id}       that run's pictures
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from rt_recon.config import SessionConfig
from rt_recon.display.assets import StaticAssets
from rt_recon.display.auth import AccessGuard, resolve_token
from rt_recon.display.feeds import MarkerFeed, VolumeSourceFeed, ZmqFeed
from rt_recon.display.hub import Hub, Kind
from rt_recon.display.pictures import StimulusPictures
from rt_recon.display.presenter import Presenter, no_presentation
from rt_recon.display.record_control import RecordRequest, record_endpoint
from rt_recon.display.state import ConsoleState
from rt_recon.errors import StreamError
from rt_recon.transport.control import request

log = logging.getLogger(__name__)

#: Seconds between console-state refreshes (and checks for a renderer gone away).
TICK_S = 0.25

_PAGES = {"/": "index.html", "/participant": "participant.html", "/console": "console.html"}


def build_app(
    hub: Hub,
    *,
    token: str | None,
    port: int,
    assets: StaticAssets | None = None,
    pictures: StimulusPictures | None = None,
    lifespan: Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]] | None = None,
    clock: Callable[[], float] = time.monotonic,
    record: RecordRequest | None = None,
    presenter: Presenter | None = None,
) -> Starlette:
    """The ASGI app: pages, assets, stimulus pictures, state, record control, the WebSockets
    (and a training run's presentation, with ``presenter``)."""
    assets = assets or StaticAssets()

    def page(name: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return assets.response(name)

        return endpoint

    async def static(request: Request) -> Response:
        return assets.response(request.path_params["name"])

    async def stimulus(request: Request) -> Response:
        if pictures is None:
            return PlainTextResponse("no dataset: set console.dataset\n", status_code=404)
        return pictures.response(request.path_params["stimulus_id"])

    async def state(request: Request) -> Response:
        return JSONResponse(hub.snapshot(clock()))

    def socket_endpoint(kind: Kind) -> Callable[[WebSocket], Any]:
        async def endpoint(websocket: WebSocket) -> None:
            await _serve_page_socket(websocket, hub, kind, clock)

        return endpoint

    routes = [
        *(Route(path, page(name)) for path, name in _PAGES.items()),
        Route("/static/{name}", static),
        Route("/stimuli/{stimulus_id:int}.png", stimulus),
        Route("/api/state", state),
        Route("/api/record", record_endpoint(record), methods=["POST"]),
        WebSocketRoute("/ws/participant", socket_endpoint("participant")),
        WebSocketRoute("/ws/console", socket_endpoint("console")),
        *(presenter.routes() if presenter else [WebSocketRoute("/ws/present", no_presentation)]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(AccessGuard, token=token, port=port)],
        lifespan=lifespan,
    )


async def _serve_page_socket(
    websocket: WebSocket, hub: Hub, kind: Kind, clock: Callable[[], float]
) -> None:
    """Pump pictures (and state) to one page; take its acks; end when either side stops."""
    await websocket.accept()
    client = hub.connect(kind)

    async def send(message: str | bytes) -> None:
        if isinstance(message, bytes):
            await websocket.send_bytes(message)
        else:
            await websocket.send_text(message)

    async def receive() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "ack":
                client.ack()

    tasks = [asyncio.create_task(hub.pump(client, send, clock)), asyncio.create_task(receive())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.debug("%s page socket ended: %s", kind, task.exception())
    finally:
        hub.clients.discard(client)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await websocket.close()


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, or a StreamError naming both."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StreamError(
            f"console cannot bind {host}:{port}: {exc.strerror} "
            "(another console running? set console.port)"
        ) from None
    sock.listen(64)
    return sock


def run_console(
    config: SessionConfig, stop: threading.Event, presenter: Presenter | None = None
) -> None:
    """Serve the console until ``stop`` is set (or SIGINT/SIGTERM); with ``presenter``, the
    participant page also plays its run (``rt-recon present``)."""
    section = config.console
    token = resolve_token(section)
    pictures = StimulusPictures.open(section.dataset) if section.dataset is not None else None
    hub = Hub(
        ConsoleState(
            config.budgets_ms(),
            fd_threshold_mm=section.fd_threshold_mm,
            quality=config.quality,
            history=section.history_trs,
            volume_source_id=config.stream.source_id,
            markers_source_id=config.stream.markers_source_id,
            feedback=config.feedback.label(),
        ),
        picture_ids=pictures,
        crossfade_ms=section.crossfade_ms,
        confidence_fade_below=section.confidence_fade_below,
    )
    status_endpoints = {
        "decoder": config.decoder.latents_endpoint,
        "renderer": config.renderer.frames_endpoint,
        "recorder": config.recorder.status_endpoint,
    }

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()

        def deliver(callback: Callable[..., None], *args: Any) -> None:
            """Run ``callback(*args)`` on the event loop (from a feed thread)."""
            with contextlib.suppress(RuntimeError):  # the loop closed while shutting down
                loop.call_soon_threadsafe(callback, *args)

        def on_malformed(kind: str, reason: str, now: float) -> None:
            deliver(hub.state.on_malformed, kind, reason, now)

        feeds = [
            ZmqFeed(
                config.renderer.frames_endpoint,
                status_endpoints,
                lambda frame, now: deliver(hub.on_frame, frame.header, frame.image, now),
                lambda status, now: deliver(hub.on_status, status, now),
                lambda node, connected, now: deliver(hub.on_link, node, connected, now),
                curve=config.security,
                on_malformed=on_malformed,
            ),
            MarkerFeed(
                config.stream.markers_source_id,
                lambda marker, stamp: deliver(hub.on_marker, marker, stamp, time.monotonic()),
                on_malformed=on_malformed,
                on_inlet=lambda present, now: deliver(hub.on_marker_inlet, present, now),
            ),
            VolumeSourceFeed(
                config.stream.source_id,
                lambda report, now: deliver(hub.on_volume_source, report, now),
            ),
        ]
        for feed in feeds:
            feed.start()
        ticker = asyncio.create_task(_tick(hub))
        try:
            yield
        finally:
            hub.close()
            ticker.cancel()
            for feed in feeds:
                await asyncio.to_thread(feed.stop)

    sock = _bind(section.host, section.port)
    app = build_app(
        hub,
        token=token,
        port=section.port,
        pictures=pictures,
        lifespan=lifespan,
        record=_recorder_control(config),
        presenter=presenter,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
            # raw pictures: compressing 0.8 MB (512x512 RGB) costs ~30 ms a frame; send as is
            ws_per_message_deflate=False,
        )
    )
    shown = f"[{section.host}]" if ":" in section.host else section.host
    base = f"http://{shown}:{section.port}"
    log.info(
        "console on %s/console, participant display on %s/participant%s",
        base,
        base,
        " (token required: add ?token=...)" if token else "",
    )
    asyncio.run(_serve(server, sock, stop))
    log.info("console stopped")


def _recorder_control(config: SessionConfig) -> RecordRequest | None:
    """Sends the console's record commands to the recorder (None: no control endpoint)."""
    endpoint = config.recorder.control_endpoint
    if endpoint is None:
        return None

    def send(command: str) -> dict[str, Any]:
        return request(endpoint, {"command": command, "by": "console"}, curve=config.security)

    return send


async def _tick(hub: Hub) -> None:
    while True:
        hub.tick(time.monotonic())
        await asyncio.sleep(TICK_S)


async def _serve(server: uvicorn.Server, sock: socket.socket, stop: threading.Event) -> None:
    async def watch() -> None:
        while not stop.is_set() and not server.should_exit:
            await asyncio.sleep(0.2)
        server.should_exit = True

    watcher = asyncio.create_task(watch())
    try:
        await server.serve(sockets=[sock])
    finally:
        watcher.cancel()
        sock.close()
