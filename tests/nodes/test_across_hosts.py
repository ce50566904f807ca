"""Across hosts: source, decoder and renderer on two network hosts, over LSL and ZeroMQ.

Two network namespaces joined by a veth pair stand in for two machines (the
test makes them with ``ip netns`` and removes them after). Host A runs the
replay (the scanner side) and the renderer (the GPU box); host B runs the
decoder (the analysis PC). Volumes cross from A to B over LSL, latents from
B to A over ZeroMQ with CURVE (non-loopback endpoints need keys), and the
renderer's pictures land as PNGs. Skips, with the reason, where namespaces
cannot be made (no ``ip``, not root, or a sandbox that forbids them).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import time
import uuid

import pytest

from rt_recon.nodes.renderer import frames_dir
from rt_recon.nodes.supervisor import Child
from rt_recon.transport.curve import write_certificates
from tests.conftest import free_port

pytestmark = pytest.mark.slow


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20)


@pytest.fixture
def two_hosts():
    """``(ns_a, ip_a, ns_b, ip_b)``: two namespaces on one /24 over a veth pair."""
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (Debian's iproute2) to make network namespaces")
    tag = uuid.uuid4().hex[:6]
    ns_a, ns_b = f"rtr-{tag}-a", f"rtr-{tag}-b"
    subnet = f"10.213.{random.randint(1, 250)}"
    ip_a, ip_b = f"{subnet}.1", f"{subnet}.2"
    try:
        _ip("netns", "add", ns_a)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"network namespaces are not permitted here: {exc.stderr.strip()}")
    try:
        _ip("netns", "add", ns_b)
        _ip("link", "add", f"rta{tag}", "type", "veth", "peer", "name", f"rtb{tag}")
        for ns, dev, addr in ((ns_a, f"rta{tag}", ip_a), (ns_b, f"rtb{tag}", ip_b)):
            _ip("link", "set", dev, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield ns_a, ip_a, ns_b, ip_b
    finally:
        for ns in (ns_a, ns_b):  # deleting a namespace removes its end of the veth pair
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=20)


def test_decoder_and_renderer_on_two_hosts_over_lsl_and_curve_zeromq(
    two_hosts, node_config, small_dataset, node_processes, tmp_path
):
    ns_a, ip_a, ns_b, ip_b = two_hosts
    keys = write_certificates(tmp_path / "keys")
    config = node_config.with_overrides(
        {
            "decoder.latents_endpoint": f"tcp://{ip_b}:{free_port()}",
            "decoder.wait_for_subscribers": 1,  # the renderer, across the link
            "decoder.mode": "continuous",
            "renderer.frames_endpoint": f"tcp://{ip_a}:{free_port()}",
            "stream.resolve_timeout_s": 60,
            **keys.overrides(),
        }
    )
    # LSL finds streams by multicast; on a fresh veth link, name the peers instead.
    lsl_cfg = tmp_path / "lsl_api.cfg"
    lsl_cfg.write_text(f"[lab]\nKnownPeers = {{{ip_a}, {ip_b}}}\n[ports]\nIPv6 = disable\n")
    env = {"LSLAPICFG": str(lsl_cfg)}
    run = small_dataset.runs("test")[0]
    config_path = node_processes.config_path(config)

    def start(node: str, host: str, *args: str) -> Child:
        wrapper = ["ip", "netns", "exec", host]
        return node_processes.supervisor.start_node(
            node, config_path, *args, wrapper=wrapper, env=env
        )

    renderer = start("renderer", ns_a)
    decoder = start("decoder", ns_b)
    source = start("replay", ns_a, str(run.bold), "--events", str(run.events))
    last = frames_dir(config) / f"tr-{run.n_trs - 1:05d}.png"
    deadline = time.monotonic() + 180
    while not last.is_file() and time.monotonic() < deadline:
        node_processes.assert_running("renderer", "decoder")
        assert source.returncode in (None, 0), source.tail()
        time.sleep(0.2)
    decoder_log = decoder.log_text()
    assert last.is_file(), f"no frame for the last TR; decoder log:\n{decoder_log[-2000:]}"
    frames = sorted(frames_dir(config).glob("tr-*.png"))
    assert len(frames) >= run.n_trs // 2  # latest-only may skip some, never most
    assert "TR(s) missing" not in decoder_log  # LSL across the link lost nothing
    assert f"decoder publishing on tcp://{ip_b}" in decoder_log
    assert f"renderer publishing on tcp://{ip_a}" in renderer.log_text()
