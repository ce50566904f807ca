"""Preflight for ``rt-recon run``: what would stop a node starting, found before any starts.

Every endpoint a node will bind is free, the render model is complete, the
decoder bundle loads, and the bundle was fitted for the render model the
session renders with (their fingerprints agree). Each problem is one
:class:`~rt_recon.errors.RtReconError` line naming its cause.
"""

from __future__ import annotations

import socket
from urllib.parse import urlparse

from rt_recon.config import SessionConfig
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.errors import BundleError, StreamError
from rt_recon.render.embedded import resolve_model_path
from rt_recon.render.model import check_model_dir, model_fingerprint


def bound_endpoints(config: SessionConfig, node: str) -> list[str]:
    """The ZeroMQ endpoints (or http addresses) a node binds."""
    if node == "decoder":
        return [config.decoder.latents_endpoint]
    if node == "renderer":
        return [config.renderer.frames_endpoint]
    if node == "recorder":
        control = config.recorder.control_endpoint
        return [config.recorder.status_endpoint, *([control] if control else [])]
    console = getattr(config, "console", None)
    if node == "console" and console is not None:
        return [f"tcp://{console.host}:{console.port}"]
    return []


def _check_free(node: str, endpoint: str) -> None:
    parsed = urlparse(endpoint)
    if parsed.scheme != "tcp":
        return
    host = parsed.hostname or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, parsed.port or 0))
        except OSError as exc:
            raise StreamError(
                f"{node}: cannot bind {endpoint}: {exc.strerror} (is another session running?)"
            ) from None


def check_before_start(config: SessionConfig, nodes: tuple[str, ...]) -> None:
    """Raise a one-line RtReconError for the first thing that would stop a node starting."""
    for node in nodes:
        for endpoint in bound_endpoints(config, node):
            _check_free(node, endpoint)
    model_path = None
    if "renderer" in nodes:
        model_path = check_model_dir(resolve_model_path(config))
    if {"decoder", "recorder"} & set(nodes):
        if config.decoder.bundle is None:
            raise BundleError(
                "decoder.bundle is not set in the config; fit one with `rt-recon fit`"
            )
        bundle = DecoderBundle.load(config.decoder.bundle)
        if model_path is not None:
            bundle.model.check_fingerprint(model_fingerprint(model_path), str(model_path))
