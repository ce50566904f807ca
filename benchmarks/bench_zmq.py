"""ZeroMQ latents transport at NSD scale: our raw multipart framing vs JSON-encoded arrays.

One latents message (``z`` 4x64x64 + ``c`` 77x1024 float32, 380 KB) from a
publisher to a subscriber on loopback TCP, one in flight at a time: ours
sends ``[topic, JSON header, raw z, raw c]`` with ``copy=False`` and views
the buffers on receipt (docs/protocol.md); the baseline a first version
might write sends the arrays as JSON lists (pickle is not allowed on any
wire here, so it is not a baseline).

    python -m benchmarks.bench_zmq [--repeats 200]
"""

from __future__ import annotations

import argparse
import json
import socket
import time

import numpy as np
import zmq

from benchmarks._report import Timing, machine, markdown_table, write_json
from rt_recon.protocol import TOPIC_LATENTS
from rt_recon.transport.zmq import Publisher, Subscriber


def _free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _ours(z: np.ndarray, c: np.ndarray, repeats: int) -> list[float]:
    endpoint = _free_endpoint()
    out = []
    with Publisher(endpoint) as pub, Subscriber(endpoint, [TOPIC_LATENTS]) as sub:
        pub.wait_for_subscribers(1, TOPIC_LATENTS, timeout=10)
        for i in range(repeats + 5):
            start = time.perf_counter()
            pub.send(TOPIC_LATENTS, {"seq": i}, {"z": z, "c": c})
            message = sub.receive(timeout=5)
            out.append(time.perf_counter() - start)
            assert message is not None and message.arrays["z"].shape == z.shape
    return out[5:]


def _json_lists(z: np.ndarray, c: np.ndarray, repeats: int) -> list[float]:
    endpoint = _free_endpoint()
    context = zmq.Context.instance()
    pub, sub = context.socket(zmq.PUB), context.socket(zmq.SUB)
    pub.bind(endpoint)
    sub.connect(endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    time.sleep(0.3)  # the baseline has no subscription handshake
    out = []
    for i in range(repeats + 5):
        start = time.perf_counter()
        pub.send(json.dumps({"seq": i, "z": z.tolist(), "c": c.tolist()}).encode())
        message = json.loads(sub.recv())
        np.asarray(message["z"], dtype=np.float32), np.asarray(message["c"], dtype=np.float32)
        out.append(time.perf_counter() - start)
    pub.close(0)
    sub.close(0)
    return out[5:]


def run(repeats: int = 200) -> dict:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4, 64, 64)).astype(np.float32)
    c = rng.normal(size=(77, 1024)).astype(np.float32)
    rows = [
        Timing.of("JSON-encoded arrays (baseline)", _json_lists(z, c, max(10, repeats // 10))),
        Timing.of("rt_recon multipart, raw buffers, copy=False", _ours(z, c, repeats)),
    ]
    return {
        "bytes": int(z.nbytes + c.nbytes),
        "machine": machine(),
        "rows": rows,
        "table": markdown_table(rows, rows[0].name),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json")
    args = parser.parse_args()
    result = run(args.repeats)
    print(f"ZeroMQ latents message, {result['bytes']} bytes, loopback TCP; {result['machine']}")
    print(result["table"])
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
