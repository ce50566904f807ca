"""Helpers for the console tests: a light config, a console subprocess, realistic typed
frames and heartbeats (the protocol's types, as the console's feeds hand them on)."""

from __future__ import annotations

import http.client
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rt_recon.config import SessionConfig
from rt_recon.protocol import Frame, FrameHeader, Status
from tests.conftest import free_port, unique

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

#: Stage end times after acquisition, in ms: a healthy CPU TR (within every budget).
HEALTHY_MS = {
    "received": 0.4,
    "preprocessed": 15.0,
    "decoded": 17.0,
    "sent": 17.2,
    "render_received": 17.6,
    "rendered": 160.0,
    "published": 160.5,
}


def console_config(tmp_path: Path, **console: Any) -> SessionConfig:
    """A config with free ports and a unique marker stream, for a console alone."""
    return SessionConfig.model_validate(
        {
            "paths": {"output_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache")},
            "stream": {"markers_source_id": unique("mrk_src"), "markers_name": unique("mrk")},
            "decoder": {"latents_endpoint": f"tcp://127.0.0.1:{free_port()}"},
            "renderer": {"frames_endpoint": f"tcp://127.0.0.1:{free_port()}"},
            "recorder": {
                "status_endpoint": f"tcp://127.0.0.1:{free_port()}",
                "control_endpoint": f"tcp://127.0.0.1:{free_port()}",
            },
            "console": {"port": free_port(), **console},
        }
    ).resolved()


def frame_header(
    tr: int,
    acquired: float,
    *,
    seq: int | None = None,
    stage_ms: dict[str, float] | None = None,
    **fields: Any,
) -> FrameHeader:
    """A frame header as the renderer sends it, stage times ``stage_ms`` after ``acquired``
    (LSL s); ``fields`` override the header's (``lag_trs``, ``fd``, ``trial``, ...)."""
    ends = {**HEALTHY_MS, **(stage_ms or {})}
    times = {"acquired": acquired, **{k: acquired + v / 1000.0 for k, v in ends.items()}}
    return FrameHeader.from_json(
        {
            "seq": tr if seq is None else seq,
            "tr": tr,
            "session": "test",
            "run": "01",
            "lag_trs": 3,
            "mode": "continuous",
            "model_fingerprint": "test-model",
            "volume_crc32": tr,
            "warming_up": False,
            "missed_before": 0,
            "skipped_total": 0,
            "times": times,
            **fields,
        }
    )


def frame_message(header: FrameHeader, image: np.ndarray) -> list[Any]:
    """A frame as the renderer publishes it (``Publisher.send_frames``)."""
    return Frame(header, image).encode()


def status_header(node: str, state: str, seq: int, pid: int = 4242, **counters: Any) -> Status:
    """A heartbeat of ``node`` (its counters flat beside the base keys, as on the wire)."""
    return Status.from_json(
        {"node": node, "pid": pid, "state": state, "seq": seq, "t": 0.0, "uptime_s": seq * 1.0,
         **counters}
    )  # fmt: skip


def pattern(i: int, size: int = 64) -> np.ndarray:
    """A picture unique to ``i``: a colour gradient with a diagonal band that moves with ``i``."""
    y, x = np.mgrid[0:size, 0:size]
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[..., 0] = (x * 255 // max(size - 1, 1) + 37 * i) % 256
    image[..., 1] = (y * 255 // max(size - 1, 1) + 91 * i) % 256
    image[..., 2] = np.where((x + y + 3 * i) % 16 < 8, 230, 20)
    return image


class ConsoleProcess:
    """``python -m rt_recon console --config ...`` as a real subprocess."""

    def __init__(self, config: SessionConfig, config_path: Path, connect_host: str = "127.0.0.1"):
        config_path.write_text(config.to_json())
        self.config = config
        self.host = connect_host
        self.port = config.console.port
        self.url = f"http://{connect_host}:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rt_recon", "console", "--config", str(config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the server answers HTTP (any status), or fail with its stderr."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"console exited early:\n{self.process.stderr.read()}")
            try:
                self.get("/api/state", timeout=2.0)
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"console did not answer within {timeout} s")

    def get(
        self, path: str, headers: dict[str, str] | None = None, timeout: float = 5.0
    ) -> tuple[int, dict[str, str], bytes]:
        """One raw HTTP GET (the path goes out exactly as given, unnormalised)."""
        return self.request("GET", path, headers=headers, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 5.0,
    ) -> tuple[int, dict[str, str], bytes]:
        """One raw HTTP request."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> ConsoleProcess:
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
