"""The clock every message is stamped on, the named times, and the latency stages between them.

All times are seconds on the LSL clock, ``pylsl.local_clock()``. On Linux
liblsl reads ``std::chrono::steady_clock``, i.e. ``CLOCK_MONOTONIC``: the
same clock as Python's ``time.monotonic()`` or C's
``clock_gettime(CLOCK_MONOTONIC)``, so a client without liblsl on the same
machine can compute latencies from these stamps (tests hold this).
"""

from __future__ import annotations

from collections.abc import Mapping

#: Named timestamps a message can carry in ``header["times"]``, in pipeline order.
TIME_KEYS = (
    "acquired",  # the volume's LSL timestamp: acquisition time
    "received",  # decoder pulled the volume from LSL
    "preprocessed",  # decoder finished preprocessing
    "decoded",  # decoder finished applying the decoders
    "sent",  # decoder handed the latents message to ZeroMQ
    "render_received",  # renderer took the latents message off its socket
    "rendered",  # renderer finished diffusion and VAE decode
    "published",  # renderer handed the frame to ZeroMQ
)

#: Latency stages reported per TR: (name, start key, end key).
STAGES = (
    ("lsl_transport", "acquired", "received"),
    ("preprocess", "received", "preprocessed"),
    ("decode", "preprocessed", "decoded"),
    ("zmq_latents", "sent", "render_received"),
    ("render", "render_received", "rendered"),
    ("end_to_end", "acquired", "published"),
)

#: The stage names, in order.
STAGE_NAMES = tuple(name for name, _, _ in STAGES)


def stage_latencies(times: Mapping[str, float]) -> dict[str, float]:
    """Per-stage latencies in seconds for the :data:`STAGES` whose two ends are present."""
    return {
        name: times[end] - times[start]
        for name, start, end in STAGES
        if times.get(start) is not None and times.get(end) is not None
    }
