"""Every wire format of rt_recon, in one place (described for humans in docs/protocol.md).

Two wires:

* **LSL** carries volumes (stream type ``fMRI``, one sample = one volume) and
  events (stream type ``Markers``, one JSON object per sample: :class:`Marker`).
  The volume stream's ``desc/rt_recon`` element describes the geometry once
  (:class:`VolumeStreamMeta`).
* **ZeroMQ** carries latents, frames and status (PUB/SUB) and control
  requests (REQ/REP) as multipart messages ``[topic, header, *buffers]``;
  the header is UTF-8 JSON, each buffer a raw C-order array whose dtype and
  shape the header lists. Each message type is typed and validated here
  (:class:`Latents`, :class:`Frame`, :class:`Status`, :class:`ControlRequest`,
  :class:`ControlReply`).

Also here: the clock and the latency stages (:data:`STAGES`), and the trial
rule (:func:`is_trial_event`, :func:`onset_tr`, :class:`TrialWindow`). No
pickle anywhere: a consumer in any language can read both wires from the doc.
"""

from rt_recon.protocol._framing import (
    DEFAULT_MAX_MESSAGE_BYTES,
    FRAMING_KEYS,
    PROTOCOL_NAME,
    PROTOCOL_VERSION,
    TOPIC_CONTROL,
    TOPIC_FRAME,
    TOPIC_LATENTS,
    TOPIC_STATUS,
    WIRE_DTYPES,
    Message,
    decode_message,
    encode_message,
)
from rt_recon.protocol._lsl import (
    DECODED_CHANNELS,
    DECODED_STREAM_TYPE,
    END_OF_RUN,
    MARKER_STREAM_TYPE,
    MAX_INDEX,
    PACES,
    VOLUME_STREAM_TYPE,
    VOXEL_ORDER,
    VolumeStreamMeta,
    make_decoded_stream_info,
    make_marker_stream_info,
    make_volume_stream_info,
    parse_volume_stream_info,
)
from rt_recon.protocol._markers import (
    EVENT,
    RESPONSE,
    RUN_END,
    RUN_START,
    TRIAL_TYPES,
    Marker,
    TrialType,
    decode_marker,
    encode_marker,
)
from rt_recon.protocol._messages import (
    AWAY_AFTER_S,
    FAILED_STATES,
    HEARTBEAT_PERIOD_S,
    INLET_OPEN_STATES,
    NODE_COUNTERS,
    SCHEMA_KEY,
    WORKING_STATES,
    ControlReply,
    ControlRequest,
    DecoderCounters,
    Frame,
    FrameHeader,
    Latents,
    LatentsHeader,
    NodeState,
    RecorderCounters,
    RendererCounters,
    RunAlignment,
    Status,
    Times,
    TrHeader,
    TrialRef,
    counter_names,
    counters_json,
)
from rt_recon.protocol._stages import STAGE_NAMES, STAGES, TIME_KEYS, stage_latencies
from rt_recon.protocol._trials import (
    TrialWindow,
    is_trial_event,
    onset_tr,
    onset_tr_from_seconds,
    span_trs,
    trial_samples,
)

__all__ = [
    "AWAY_AFTER_S",
    "DECODED_CHANNELS",
    "DECODED_STREAM_TYPE",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "END_OF_RUN",
    "EVENT",
    "FAILED_STATES",
    "FRAMING_KEYS",
    "HEARTBEAT_PERIOD_S",
    "INLET_OPEN_STATES",
    "MARKER_STREAM_TYPE",
    "MAX_INDEX",
    "NODE_COUNTERS",
    "PACES",
    "PROTOCOL_NAME",
    "PROTOCOL_VERSION",
    "RESPONSE",
    "RUN_END",
    "RUN_START",
    "SCHEMA_KEY",
    "STAGES",
    "STAGE_NAMES",
    "TIME_KEYS",
    "TOPIC_CONTROL",
    "TOPIC_FRAME",
    "TOPIC_LATENTS",
    "TOPIC_STATUS",
    "TRIAL_TYPES",
    "VOLUME_STREAM_TYPE",
    "VOXEL_ORDER",
    "WIRE_DTYPES",
    "WORKING_STATES",
    "ControlReply",
    "ControlRequest",
    "DecoderCounters",
    "Frame",
    "FrameHeader",
    "Latents",
    "LatentsHeader",
    "Marker",
    "Message",
    "NodeState",
    "RecorderCounters",
    "RendererCounters",
    "RunAlignment",
    "Status",
    "Times",
    "TrHeader",
    "TrialRef",
    "TrialType",
    "TrialWindow",
    "VolumeStreamMeta",
    "counter_names",
    "counters_json",
    "decode_marker",
    "decode_message",
    "encode_marker",
    "encode_message",
    "is_trial_event",
    "make_decoded_stream_info",
    "make_marker_stream_info",
    "make_volume_stream_info",
    "onset_tr",
    "onset_tr_from_seconds",
    "parse_volume_stream_info",
    "span_trs",
    "stage_latencies",
    "trial_samples",
]
