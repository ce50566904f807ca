"""Preflight for ``rt-recon run``: what would stop a node starting, found before any starts.

In this order, each problem one :class:`~rt_recon.errors.RtReconError` line naming its cause:

1. The session itself: no node listed twice, no two endpoints on one port
   (or ipc path) — a probe of each alone would find both free.
2. The console's token rules (:func:`rt_recon.display.auth.resolve_token`): a
   token of at least 16 safe characters, a readable token file, a token on
   any non-loopback bind.
3. No recording already at the recorder's path (a recording is never
   overwritten; the recorder would refuse it only once the stream arrives).
4. Every tcp endpoint a node will bind is free. The probe binds and listens
   as the node will, with ``SO_REUSEADDR`` (as libzmq and the console do), so
   a port left in TIME_WAIT by a session that just stopped or crashed is
   free, and a port another process listens on is not.
5. The render model is complete, the decoder bundle loads, and the bundle was
   fitted for the render model the session renders with (fingerprints agree).
6. The feedback condition (docs/study-designs.md): a study file with a valid entry for
   the session, and a yoked run's recording readable, with frames of this model's size.
"""

from __future__ import annotations

import socket
from collections import Counter
from urllib.parse import urlparse

from rt_recon.config import SessionConfig
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.errors import BundleError, ConfigError, DataError, StreamError
from rt_recon.record.feedback import YokedFrames, resolve_feedback
from rt_recon.record.segments import SessionReader
from rt_recon.render.embedded import resolve_model_path
from rt_recon.render.model import check_model_dir, model_fingerprint

#: Hosts that bind every interface: they share a port with any other host.
_WILDCARD_HOSTS = frozenset({"*", "", "0.0.0.0", "::"})


def _bound(config: SessionConfig, node: str) -> list[tuple[str, str]]:
    """(config key, endpoint) of each ZeroMQ endpoint (or http address) ``node`` binds."""
    if node == "decoder":
        return [("decoder.latents_endpoint", config.decoder.latents_endpoint)]
    if node == "renderer":
        return [("renderer.frames_endpoint", config.renderer.frames_endpoint)]
    if node == "recorder":
        control = config.recorder.control_endpoint
        return [
            ("recorder.status_endpoint", config.recorder.status_endpoint),
            *([("recorder.control_endpoint", control)] if control else []),
        ]
    if node == "console":
        host = config.console.host
        shown = f"[{host}]" if ":" in host else host
        return [("console.host/console.port", f"tcp://{shown}:{config.console.port}")]
    return []


def bound_endpoints(config: SessionConfig, node: str) -> list[str]:
    """The ZeroMQ endpoints (or http addresses, as ``tcp://host:port``) a node binds."""
    return [endpoint for _, endpoint in _bound(config, node)]


def _host(endpoint: str) -> str:
    host = (urlparse(endpoint).hostname or "").lower()
    return "127.0.0.1" if host == "localhost" else host


def _same_place(a: str, b: str) -> bool:
    """Whether binding both endpoints would collide (one port, or one ipc path)."""
    pa, pb = urlparse(a), urlparse(b)
    if pa.scheme != pb.scheme:
        return False
    if pa.scheme != "tcp":
        return a == b
    if pa.port != pb.port:
        return False
    ha, hb = _host(a), _host(b)
    return ha == hb or ha in _WILDCARD_HOSTS or hb in _WILDCARD_HOSTS


def _check_unique(config: SessionConfig, nodes: tuple[str, ...]) -> None:
    twice = [node for node, n in Counter(nodes).items() if n > 1]
    if twice:
        raise ConfigError(
            f"run.nodes lists {', '.join(twice)} more than once: expected each node once, "
            f"found {list(nodes)}"
        )
    bound = [(key, endpoint) for node in nodes for key, endpoint in _bound(config, node)]
    for i, (key, endpoint) in enumerate(bound):
        for other_key, other in bound[i + 1 :]:
            if _same_place(endpoint, other):
                raise ConfigError(
                    f"{key} {endpoint} and {other_key} {other} bind the same "
                    "port: expected a port of its own for each endpoint"
                )


def _check_token(config: SessionConfig) -> None:
    from rt_recon.display.auth import resolve_token  # the console's own rules

    resolve_token(config.console)


def _check_no_recording(config: SessionConfig) -> None:
    path = config.recording_path
    if path.exists():
        raise DataError(
            f"recorder: {path} exists and a recording is never overwritten: move it away, "
            "or set recorder.path (or paths.output_dir) to a new place"
        )


def _check_free(node: str, endpoint: str) -> None:
    """Bind and listen on ``endpoint`` as the node will (``SO_REUSEADDR``), then let go."""
    parsed = urlparse(endpoint)
    if parsed.scheme != "tcp":
        return
    host = parsed.hostname or "127.0.0.1"
    host = "0.0.0.0" if host == "*" else host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # TIME_WAIT connections of a session that just ended do not block a listener that
        # sets SO_REUSEADDR, as libzmq and the console do; a listening socket still does
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, parsed.port or 0))
            probe.listen(1)
        except OSError as exc:
            raise StreamError(
                f"{node}: cannot bind {endpoint}: {exc.strerror} (is another session running?)"
            ) from None


def check_before_start(config: SessionConfig, nodes: tuple[str, ...]) -> None:
    """Raise a one-line RtReconError for the first thing that would stop a node starting."""
    _check_unique(config, nodes)
    if "console" in nodes:
        _check_token(config)
    if "recorder" in nodes:
        _check_no_recording(config)
    for node in nodes:
        for endpoint in bound_endpoints(config, node):
            _check_free(node, endpoint)
    model_path = None
    if "renderer" in nodes:
        model_path = check_model_dir(resolve_model_path(config))
    if "decoder" in nodes or ("recorder" in nodes and config.decoder.bundle is not None):
        # a recorder without a bundle records the training runs (volumes and markers)
        if config.decoder.bundle is None:
            raise BundleError(
                "decoder.bundle is not set in the config; fit one with `rt-recon fit`"
            )
        bundle = DecoderBundle.load(config.decoder.bundle)
        if model_path is not None:
            bundle.model.check_fingerprint(model_fingerprint(model_path), str(model_path))
    if "renderer" in nodes or "recorder" in nodes:
        _check_feedback(config)


def _check_feedback(config: SessionConfig) -> None:
    """The study file's entry and a yoked run's recording, as the renderer will load it."""
    feedback = resolve_feedback(config, digest=False)
    if feedback.yoked_recording is None:
        return
    if config.decoder.bundle is None:  # no picture size to check against: readable at least
        with SessionReader(feedback.yoked_recording):
            return
    size = DecoderBundle.read_specs(config.decoder.bundle)[1].image_size
    YokedFrames(feedback.yoked_recording, (size, size, 3), quiet=True)
