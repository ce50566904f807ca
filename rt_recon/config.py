"""The session config: one typed, validated schema for every node.

A session is described by one YAML file (``configs/demo.yaml`` is the
embedded default). Unknown keys and wrong types are :class:`ConfigError`\\ s
that name the file, the key and what was expected.

Relative paths in a config are resolved against the current working
directory when the config is loaded; ``~`` is expanded. The supervisor hands
its children the resolved config (all paths absolute) so every node sees the
same values.

Secrets stay off disk. The only secret a config holds is ``console.token``
(``console.token_file`` and the ``security`` certificates are paths: their
contents are never read into the config). Whatever writes a config to a
file, a log or a recording writes :meth:`SessionConfig.redacted` (or
``to_json(redact=True)``), which drops the token; a process started with such
a file gets the token through its environment, :data:`CONSOLE_TOKEN_ENV`,
which :func:`load_config` reads back (:meth:`SessionConfig.secret_env`).
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from rt_recon.errors import ConfigError

#: The sentinel model name that means "the model shipped inside the package".
EMBEDDED_MODEL = "embedded"

#: The environment variable that carries ``console.token`` to a process whose config file
#: was written without it (``rt-recon run`` passes it to its nodes this way); an operator
#: may set it instead of writing the token into a config.
CONSOLE_TOKEN_ENV = "RT_RECON_CONSOLE_TOKEN"

#: Config keys whose values are secrets: never written to disk or logs, never echoed in errors.
SECRET_KEYS = frozenset({"token"})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_zmq_endpoint(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in {"tcp", "ipc", "inproc"}:
        raise ValueError(f"expected a ZeroMQ endpoint like tcp://127.0.0.1:5555, found {value!r}")
    if parsed.scheme == "tcp" and parsed.port is None:
        raise ValueError(f"expected a port in the tcp endpoint, found {value!r}")
    return value


def is_loopback_endpoint(endpoint: str) -> bool:
    """True when a ZeroMQ endpoint stays on this machine (loopback tcp, ipc, inproc)."""
    parsed = urlparse(endpoint)
    if parsed.scheme != "tcp":
        return True
    host = parsed.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SessionSection(_Section):
    id: str = Field(default="demo", min_length=1, description="Session identifier")
    subject: str = Field(default="01", min_length=1)


class PathsSection(_Section):
    output_dir: Path = Field(
        default=Path("runs/demo"), description="Where frames, logs and reports of a session go"
    )
    cache_dir: Path = Field(
        default=Path("~/.cache/rt_recon"),
        description="Where generated sessions, fitted bundles and model copies are cached",
    )


#: ``simulation.snr`` when a config leaves it out, per participant preset: each gives a median
#: split-half single-trial reliability of early visual voxels of about 0.24 (docs/simulation.md).
DEFAULT_SNR = {"easy": 0.5, "realistic": 1.5}


class SimulationSection(_Section):
    """The synthetic session the demo generates (see simulators/ and docs/simulation.md)."""

    participant: Literal["easy", "realistic"] = Field(
        default="realistic",
        description="realistic (the default): contrast-energy EV, voxel-wise HRFs, gains, shared "
        "noise, validation and test runs from a second session, atlas-like decoder masks; easy: "
        "the original synthetic brain, built to suit the decoder (docs/simulation.md)",
    )
    seed: int = 0
    world_version: Literal[1, 2] = Field(
        default=2,
        description="The picture world (simulators/world.py): 2 (the default, the embedded "
        "model's world), twelve backgrounds with gradients and textures; 1, its pictures on "
        "the four plain backgrounds only",
    )
    tr_s: float = Field(
        default=1.5,
        gt=0,
        # ``tr``: the key of configs written before the rename; dumped by alias (a dataset
        # manifest's ``simulation``, a cached session's key) it is still ``tr``
        validation_alias=AliasChoices("tr_s", "tr"),
        serialization_alias="tr",
        description="Repetition time in seconds",
    )
    image_size: int = Field(default=64, ge=16, le=256)
    grid: tuple[int, int, int] = (32, 38, 24)
    voxel_size_mm: float = Field(default=3.0, gt=0)
    n_train_runs: int = Field(default=12, ge=1)
    trials_per_run: int = Field(default=36, ge=2)
    stimulus_trs: int = Field(default=2, ge=1, description="TRs each picture stays on screen")
    lead_in_trs: int = Field(default=6, ge=0, description="Blank TRs at the start of a run")
    lead_out_trs: int = Field(default=6, ge=0, description="Blank TRs at the end of a run")
    motion: float = Field(
        default=1.0, ge=0, description="Head-motion scale: 1 is a typical still subject, 0 none"
    )
    snr: float = Field(
        default=DEFAULT_SNR["realistic"],
        gt=0,
        description="Stimulus-driven BOLD std over noise std per ROI voxel (median; realistic: "
        "over responsive voxels, session 1); left out, the participant's DEFAULT_SNR (realistic "
        "1.5, easy 0.5), each a split-half reliability of single-trial early visual responses "
        "of about 0.24 (docs/simulation.md)",
    )

    @model_validator(mode="before")
    @classmethod
    def _participant_snr(cls, data: Any) -> Any:
        """A config without ``snr`` gets its participant's default (the default participant's
        when it names none)."""
        if isinstance(data, Mapping) and data.get("snr") is None:
            participant = data.get("participant", cls.model_fields["participant"].default)
            default = DEFAULT_SNR.get(str(participant))
            if default is not None:
                return {**data, "snr": default}
        return data


class StreamSection(_Section):
    """The LSL volume and marker streams."""

    name: str = "rt_recon_volumes"
    source_id: str = "rt_recon_volumes_demo"
    markers_name: str = "rt_recon_markers"
    markers_source_id: str = "rt_recon_markers_demo"
    resolve_timeout_s: float = Field(default=30.0, gt=0)
    buffer_trs: int = Field(
        default=4, ge=1, description="LSL inlet buffer length in TRs (never minutes)"
    )


class DecoderSection(_Section):
    bundle: Path | None = Field(
        default=None, description="Decoder bundle (.safetensors); the demo fits one when null"
    )
    latents_endpoint: str = "tcp://127.0.0.1:5555"
    wait_for_subscribers: int = Field(
        default=1,
        ge=0,
        description="Subscribers to the latents topic to wait for before opening the stream",
    )
    subscriber_timeout_s: float = Field(default=60.0, gt=0)
    mode: Literal["auto", "trial", "continuous"] = Field(
        default="auto",
        description="trial: estimate the current trial from marker onsets; continuous: a "
        "sliding window (imagery, no markers); auto: trial if a marker stream is found",
    )
    max_alignment_mm: float = Field(
        default=5.0,
        gt=0,
        description="A run's first volume further than this (translation, mm) from the "
        "bundle's reference is flagged (heartbeat alignment.within_limits, console amber)",
    )
    max_alignment_deg: float = Field(
        default=5.0,
        gt=0,
        description="A run's first volume rotated more than this (degrees) from the bundle's "
        "reference is flagged, as max_alignment_mm",
    )

    _endpoint = field_validator("latents_endpoint")(_check_zmq_endpoint)


class RendererSection(_Section):
    model: str = Field(
        default=EMBEDDED_MODEL,
        description="'embedded' or a local diffusers-format model directory",
    )
    steps: int = Field(default=4, ge=1, le=50, description="Scheduler steps before strength")
    strength: float = Field(default=0.5, gt=0, le=1)
    seed: int = Field(default=0, description="Seed of the session's fixed noise")
    guidance_scale: float = Field(
        default=1.0,
        ge=1.0,
        description="Classifier-free guidance against the empty caption (1: none, one UNet "
        "call per step; above 1: two); Takagi & Nishimoto's preset uses it",
    )
    vae_roundtrip: bool = Field(
        default=False,
        description="Decode z to a picture and encode it back before img2img, as Takagi & "
        "Nishimoto's pipeline starts from the picture decoded from z",
    )
    device: str = "cpu"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    tiny_decoder: str | None = Field(
        default=None,
        description="An AutoencoderTiny folder (e.g. TAESD) to decode with instead of the VAE",
    )
    backend: Literal["torch", "onnx"] = Field(
        default="torch", description="torch, or onnx (ONNX Runtime; CUDA provider on a GPU)"
    )
    threads: int = Field(default=0, ge=0, description="torch CPU threads; 0 leaves the default")
    compile: bool = Field(
        default=False,
        description="torch.compile UNet and decoder (static shapes; CUDA graphs on cuda), "
        "warmed up at startup; torch backend only",
    )
    channels_last: bool | Literal["auto"] = Field(
        default="auto",
        description="NHWC weights for UNet and decoders; auto: on for cuda with the torch backend",
    )
    blend: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Latent blending between TRs: init_t = (1 - blend) * z_t + blend * init_t-1",
    )
    interpolate_fps: float = Field(
        default=0.0,
        ge=0.0,
        le=240.0,
        description="Frames per second rendered between two TRs' pictures from latents "
        "interpolated linearly between theirs (each marked interpolated), then the TR's own; "
        "0: off",
    )
    interpolate_ms: float = Field(
        default=500.0,
        gt=0.0,
        le=60_000.0,
        description="How long the interpolated frames take from the previous TR's picture to "
        "this TR's: the TR's own frame is published this much later (a new TR's latents cut "
        "it short)",
    )
    frames_endpoint: str = "tcp://127.0.0.1:5556"
    wait_for_subscribers: int = Field(
        default=0, ge=0, description="Frame subscribers to wait for before taking latents"
    )
    subscriber_timeout_s: float = Field(default=60.0, gt=0)
    write_png: bool = True

    _endpoint = field_validator("frames_endpoint")(_check_zmq_endpoint)

    @model_validator(mode="after")
    def _compile_needs_torch(self) -> RendererSection:
        if self.compile and self.backend != "torch":
            raise ValueError(
                f"renderer.compile applies to the torch backend, but backend is "
                f"{self.backend!r}; set compile: false or backend: torch"
            )
        return self

    @model_validator(mode="after")
    def _interpolation_has_frames(self) -> RendererSection:
        steps = self.interpolation_steps()
        if self.interpolate_fps > 0 and steps < 2:
            raise ValueError(
                f"renderer.interpolate_fps {self.interpolate_fps:g} over interpolate_ms "
                f"{self.interpolate_ms:g} leaves no frame between two TRs' (expected at least "
                f"2 steps, found {steps}); raise either, or set interpolate_fps: 0"
            )
        return self

    def interpolation_steps(self) -> int:
        """``n``: frames from one TR's picture to the next's, the TR's own included (frame
        ``j`` starts ``j / n`` of the way); under 2 there is no interpolation."""
        return round(self.interpolate_ms * self.interpolate_fps / 1000.0)

    def use_channels_last(self) -> bool:
        """``channels_last`` resolved: ``auto`` is on for cuda with the torch backend."""
        if self.channels_last == "auto":
            return self.device.startswith("cuda") and self.backend == "torch"
        return bool(self.channels_last)


class RecorderSection(_Section):
    path: Path | None = Field(
        default=None, description="Recording file; null: <output_dir>/recording.h5"
    )
    status_endpoint: str = "tcp://127.0.0.1:5557"
    control_endpoint: str | None = Field(
        default="tcp://127.0.0.1:5558",
        description="REP socket for start/stop recording (the console's button); null: none",
    )
    low_disk_mb: float = Field(
        default=1024.0, ge=0, description="Free space (MB) under which the console warns"
    )
    low_disk_minutes: float = Field(
        default=30.0,
        ge=0,
        description="Minutes of recording left (at the current rate) under which the console warns",
    )

    _endpoint = field_validator("status_endpoint")(_check_zmq_endpoint)

    @field_validator("control_endpoint")
    @classmethod
    def _control(cls, value: str | None) -> str | None:
        return None if value is None else _check_zmq_endpoint(value)


class FeedbackSection(_Section):
    """What the participant is shown: their own decoded pictures, or another recording's
    (sham / yoked feedback; docs/study-designs.md). The decoder and the recorder work as
    usual in every condition.

    Blinded: ``study_file`` (JSON, the condition per session id) sets the condition instead
    of ``condition`` and ``yoked_recording``, so this config, and the console, say only
    *blinded*; the recording stores the true condition and ``rt-recon evaluate`` reveals it.
    """

    condition: Literal["real", "yoked"] | None = Field(
        default=None,
        description="real: the participant's own decoded pictures; yoked: yoked_recording's; "
        "null: real, or with study_file the study's",
    )
    yoked_recording: Path | None = Field(
        default=None,
        description="The earlier recording whose TR frames a yoked run shows, TR by TR",
    )
    study_file: Path | None = Field(
        default=None,
        description="Blinded study: JSON giving each session id its condition (and yoked "
        "recording); set instead of condition and yoked_recording",
    )

    @model_validator(mode="after")
    def _one_source(self) -> FeedbackSection:
        if self.study_file is not None:
            if self.condition is not None or self.yoked_recording is not None:
                raise ValueError(
                    "feedback.study_file sets the condition of a blinded run: expected no "
                    "feedback.condition or feedback.yoked_recording beside it, found "
                    f"condition={self.condition!r}, yoked_recording={self.yoked_recording}"
                )
        elif self.condition == "yoked" and self.yoked_recording is None:
            raise ValueError(
                "feedback.condition is yoked: set feedback.yoked_recording to the recording "
                "(recording.h5 of an earlier run) whose frames the participant sees"
            )
        elif self.condition != "yoked" and self.yoked_recording is not None:
            raise ValueError(
                "feedback.yoked_recording is set but feedback.condition is real: set "
                "condition: yoked to show it, or remove yoked_recording"
            )
        return self

    @property
    def blinded(self) -> bool:
        return self.study_file is not None

    def label(self) -> str:
        """What the operator may see: the condition, or ``blinded``."""
        return "blinded" if self.blinded else self.condition or "real"


#: Per-TR latency budgets in milliseconds, by stage (../shared/DESIGN.md, "Performance
#: budget"): ``cpu`` with the embedded default model, ``gpu`` an SD-Turbo-size model on an
#: H100-class GPU. The stage names are the protocol's (rt_recon.protocol.STAGE_NAMES; a test
#: holds them equal).
BUDGET_PRESETS_MS: dict[str, dict[str, float]] = {
    "cpu": {
        "lsl_transport": 1.0,
        "preprocess": 30.0,
        "decode": 5.0,
        "zmq_latents": 1.0,
        "render": 250.0,
        "end_to_end": 300.0,
    },
    "gpu": {
        "lsl_transport": 1.0,
        "preprocess": 30.0,
        "decode": 2.0,
        "zmq_latents": 1.0,
        "render": 15.0,
        "end_to_end": 50.0,
    },
}


class BudgetsSection(_Section):
    """Per-stage latency budgets, in ms: what the console warns on and the evaluation judges by.

    ``preset`` picks a column of :data:`BUDGET_PRESETS_MS` (``auto``: ``gpu`` when
    ``renderer.device`` is a CUDA device, else ``cpu``); a stage set here overrides it.
    """

    preset: Literal["auto", "cpu", "gpu"] = "auto"
    lsl_transport: float | None = Field(default=None, gt=0)
    preprocess: float | None = Field(default=None, gt=0)
    decode: float | None = Field(default=None, gt=0)
    zmq_latents: float | None = Field(default=None, gt=0)
    render: float | None = Field(default=None, gt=0)
    end_to_end: float | None = Field(default=None, gt=0)

    def ms(self, device: str = "cpu") -> dict[str, float]:
        """Budget per stage in ms, the preset's with this section's overrides."""
        preset = self.preset
        if preset == "auto":
            preset = "gpu" if device.startswith("cuda") else "cpu"
        budgets = dict(BUDGET_PRESETS_MS[preset])
        for stage in budgets:
            override = getattr(self, stage)
            if override is not None:
                budgets[stage] = float(override)
        return budgets


class ConsoleSection(_Section):
    """The web console (``rt-recon console``): operator page and participant display."""

    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address to bind; anything but loopback needs a token",
    )
    port: int = Field(default=8080, ge=1, le=65535)
    token: str | None = Field(
        default=None,
        description="Access token (at least 16 characters); required on a non-loopback bind",
    )
    token_file: Path | None = Field(
        default=None, description="A file holding the access token (instead of token)"
    )
    dataset: Path | None = Field(
        default=None,
        description="Dataset folder whose stimuli/ pictures are shown beside reconstructions",
    )
    fd_threshold_mm: float = Field(
        default=0.5, gt=0, description="Framewise displacement flagged as motion, in mm"
    )
    history_trs: int = Field(default=200, ge=10, description="TRs kept in the console's plots")
    crossfade_ms: float = Field(
        default=500.0,
        ge=0.0,
        le=10_000.0,
        description="The participant display crossfades from one picture to the next over "
        "this long (never longer than the pictures' recent pace); 0: each picture at once. "
        "Keep it under the TR",
    )
    confidence_fade_below: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="Participant display: a picture whose confidence (the decoder's, 0..1: "
        "docs/protocol.md 3.1) is below this is drawn faded toward the fixation screen, "
        "opacity confidence / this; null (default): never faded. Refused in a yoked or "
        "blinded run",
    )

    @model_validator(mode="after")
    def _one_token_source(self) -> ConsoleSection:
        if self.token is not None and self.token_file is not None:
            raise ValueError("set console.token or console.token_file, not both")
        return self


class QualitySection(_Section):
    """Live data quality (docs/operators.md, "Data quality"): the decoder measures it per TR
    (its sliding window and outlier rule), the console judges it against the thresholds and
    shows a stop banner when too many recent TRs cross one (framewise displacement over
    ``console.fd_threshold_mm`` counts too)."""

    window_trs: int = Field(
        default=30,
        ge=10,
        le=1000,
        description="TRs in the sliding window of tSNR, the global-signal baseline and the "
        "DVARS baseline",
    )
    min_tsnr: float = Field(
        default=20.0,
        gt=0,
        description="tSNR below this in any ROI (median over its voxels of mean/std over the "
        "window) crosses",
    )
    max_global_pct: float = Field(
        default=2.0,
        gt=0,
        description="Global signal further than this from its running baseline, percent, crosses",
    )
    max_dvars_z: float = Field(
        default=8.0,
        gt=0,
        description="Robust z of DVARS above this marks a volume as an outlier (the decoder "
        "leaves it out of the window) and crosses",
    )
    stop_window_trs: int = Field(
        default=20, ge=1, le=1000, description="The last TRs the stop rule looks at"
    )
    stop_after_trs: int = Field(
        default=5,
        ge=1,
        description="The console shows a stop banner once this many of the last "
        "stop_window_trs TRs crossed a threshold",
    )

    @model_validator(mode="after")
    def _stop_rule_fits_its_window(self) -> QualitySection:
        if self.stop_after_trs > self.stop_window_trs:
            raise ValueError(
                f"quality.stop_after_trs ({self.stop_after_trs}) must be at most "
                f"quality.stop_window_trs ({self.stop_window_trs}): TRs crossing among the last "
                "stop_window_trs"
            )
        return self


#: The security keys that name CURVE certificate files or folders, in the order to set them.
CURVE_KEYS = (
    "curve_server_cert",
    "curve_authorized_clients",
    "curve_client_cert",
    "curve_server_public",
)


class SecuritySection(_Section):
    """ZeroMQ CURVE (encryption + client authentication); see docs/protocol.md, "Security".

    Certificates are ZeroMQ's ZPL text files, as ``rt-recon keys DIR`` writes them.
    """

    curve: Literal["auto", "always"] = Field(
        default="auto",
        description="auto: CURVE on every non-loopback tcp endpoint (and only there); "
        "always: on every endpoint, loopback included",
    )
    curve_server_cert: Path | None = Field(
        default=None,
        description="Secret certificate of the publishing nodes (server.key_secret)",
    )
    curve_authorized_clients: Path | None = Field(
        default=None,
        description="Folder of the public certificates (*.key) of the clients allowed to subscribe",
    )
    curve_client_cert: Path | None = Field(
        default=None, description="Secret certificate of the subscribing nodes (client.key_secret)"
    )
    curve_server_public: Path | None = Field(
        default=None, description="Public certificate of the publishing nodes (server.key)"
    )

    @field_validator("curve_server_cert", "curve_client_cert", "curve_server_public")
    @classmethod
    def _existing_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.expanduser().is_file():
            raise ValueError(
                "expected an existing ZeroMQ certificate file (`rt-recon keys DIR` writes them), "
                "but no file is there"
            )
        return value

    @field_validator("curve_authorized_clients")
    @classmethod
    def _existing_folder(cls, value: Path | None) -> Path | None:
        if value is not None and not value.expanduser().is_dir():
            raise ValueError(
                "expected an existing folder of client public certificates "
                "(`rt-recon keys DIR` writes DIR/authorized_clients), but no folder is there"
            )
        return value

    def curve_on(self, endpoint: str) -> bool:
        """Whether ``endpoint`` uses CURVE under this policy."""
        return self.curve == "always" or not is_loopback_endpoint(endpoint)


NodeName = Literal["decoder", "renderer", "recorder", "console"]


class RunSection(_Section):
    """What ``rt-recon run`` starts and how it keeps it running."""

    nodes: tuple[NodeName, ...] = Field(
        default=("renderer", "decoder", "recorder"), min_length=1, description="Nodes to start"
    )
    restart: tuple[NodeName, ...] = Field(
        default=("renderer", "decoder", "recorder", "console"),
        description=(
            "Nodes restarted when they crash (a restarted decoder resumes the run at the "
            "volumes' own TR indices, the TRs it was down flagged as missed; a restarted "
            "recorder writes the recording's next segment beside it, never over it)"
        ),
    )
    max_restarts: int = Field(default=5, ge=0, description="Restarts per node before giving up")


class ReplaySection(_Section):
    speed: float = Field(default=1.0, gt=0, description="Replay speed; 2 plays a run twice as fast")


#: Nodes a bridge can wait for: those that read the volume stream.
StreamConsumer = Literal["decoder", "recorder"]


class BridgeSection(_Section):
    """The scanner bridge (``rt-recon bridge``): whom a new series' stream waits for."""

    await_nodes: tuple[StreamConsumer, ...] = Field(
        default=("decoder", "recorder"),
        description=(
            "Nodes whose heartbeats must show their inlet on a new series' stream before its "
            "first volume goes out (those of them in run.nodes); empty: any one inlet"
        ),
    )
    consumer_wait_s: float = Field(
        default=30.0,
        ge=0,
        description=(
            "Seconds a new series' first volume waits for them, then streams anyway (a node "
            "that joins later flags the volumes before it as missed); 0: never waits"
        ),
    )


class RecipeSection(_Section):
    """What a decoder fit does beyond ridge (:class:`rt_recon.decode.recipe.DecoderRecipe`;
    the defaults are the decoder rt_recon shipped before recipes; docs/performance.md,
    "Decoders side by side", measures each)."""

    hrf: Literal["canonical", "library"] = Field(
        default="canonical",
        description="Every voxel the canonical HRF, or each voxel the library HRF that fits "
        "its training runs best",
    )
    denoise_pcs: int = Field(
        default=0, ge=0, description="Noise components (voxels outside the ROIs) removed per TR"
    )
    trial_estimate: Literal["window", "lss"] = Field(
        default="window",
        description="A matched filter over the trial's window, or least squares separating it "
        "from its neighbours",
    )
    select_voxels: float | Literal["auto"] | None = Field(
        default=None,
        description="Every ROI voxel (null), a fraction in (0, 1] of each head's voxels ranked "
        "by cross-validated encoding R^2, or 'auto' (the fraction chosen by cross-validation)",
    )
    lss_window_trs: int = Field(default=8, ge=3, description="TRs of the least-squares window")
    pool_size: int = Field(default=2000, ge=1, description="Most voxels in the noise pool")
    snap_c: bool = Field(
        default=False,
        description="Replace the decoded c by the nearest caption of the render model's "
        "caption bank (its caption_bank.txt, or rt-recon fit --caption-bank)",
    )

    @field_validator("select_voxels")
    @classmethod
    def _fraction(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, float) and not 0 < value <= 1:
            raise ValueError(f"expected a fraction in (0, 1], 'auto' or null, found {value}")
        return value


class FitSection(_Section):
    alphas: tuple[float, ...] = Field(
        default=(1e1, 1e2, 1e3, 1e4, 1e5), min_length=1, description="Ridge penalties to try"
    )
    hrf_window_trs: int = Field(
        default=4, ge=1, description="Volumes combined, HRF-weighted, into one estimate"
    )
    zscore_warmup_trs: int = Field(
        default=4, ge=2, description="TRs of running z-score before estimates are trusted"
    )
    motion_correction: bool = Field(
        default=True,
        description="Realign every volume to the bundle's reference (rigid, SPM-style)",
    )
    despike: bool = Field(default=True, description="Clip voxel spikes (robust smoothing)")
    detrend: Literal["highpass", "glm", "none"] = Field(
        default="highpass",
        description="Online detrending: a recursive high-pass filter, a polynomial GLM refitted "
        "every TR (with the motion parameters as confounds), or none",
    )
    highpass_cutoff_s: float = Field(default=128.0, gt=0, description="High-pass cutoff period")
    glm_degree: int = Field(default=2, ge=0, description="Polynomial degree of the GLM detrend")
    glm_motion: bool = Field(default=True, description="Motion parameters as GLM confounds")
    rescale_predictions: bool = Field(
        default=True,
        description="Stretch each decoded output around its training mean to the targets' "
        "spread (std of targets / std of out-of-fold predictions), as Brain-Diffuser does",
    )
    recipe: RecipeSection = Field(
        default_factory=RecipeSection,
        description="HRF per voxel, noise components, trial estimate and voxel selection",
    )
    low_rank: dict[str, int] = Field(
        default_factory=dict,
        description="Heads fitted low rank, e.g. {c: 128}: ridge on that many principal "
        "components of the targets (target PCA) instead of every target",
    )

    @field_validator("low_rank")
    @classmethod
    def _positive_ranks(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {head: k for head, k in value.items() if k < 1}
        if bad:
            raise ValueError(f"ranks must be positive integers, found {bad}")
        return value


class SessionConfig(_Section):
    """Everything a session needs; each node reads the sections it uses."""

    session: SessionSection = SessionSection()
    paths: PathsSection = PathsSection()
    simulation: SimulationSection = SimulationSection()
    stream: StreamSection = StreamSection()
    decoder: DecoderSection = DecoderSection()
    renderer: RendererSection = RendererSection()
    recorder: RecorderSection = RecorderSection()
    feedback: FeedbackSection = FeedbackSection()
    console: ConsoleSection = ConsoleSection()
    quality: QualitySection = QualitySection()
    run: RunSection = RunSection()
    replay: ReplaySection = ReplaySection()
    bridge: BridgeSection = BridgeSection()
    fit: FitSection = FitSection()
    security: SecuritySection = SecuritySection()
    budgets: BudgetsSection = BudgetsSection()

    def budgets_ms(self) -> dict[str, float]:
        """The session's latency budget per stage, in ms (``budgets`` for ``renderer.device``)."""
        return self.budgets.ms(self.renderer.device)

    def zmq_endpoints(self) -> dict[str, str]:
        """The session's bound ZeroMQ endpoints (publishers, the recorder's control), by key."""
        control = self.recorder.control_endpoint
        return {
            "decoder.latents_endpoint": self.decoder.latents_endpoint,
            "renderer.frames_endpoint": self.renderer.frames_endpoint,
            "recorder.status_endpoint": self.recorder.status_endpoint,
            **({"recorder.control_endpoint": control} if control is not None else {}),
        }

    def bridge_awaits(self) -> dict[str, str]:
        """The heartbeat endpoint of each node a bridge waits for (``bridge.await_nodes``
        that this session runs), by node name."""
        heartbeats = {
            "decoder": self.decoder.latents_endpoint,
            "recorder": self.recorder.status_endpoint,
        }
        return {n: heartbeats[n] for n in self.bridge.await_nodes if n in self.run.nodes}

    @model_validator(mode="after")
    def _feedback_without_interpolation(self) -> SessionConfig:
        feedback = self.feedback
        if self.renderer.interpolate_fps > 0 and feedback.label() != "real":
            raise ValueError(
                "feedback: a yoked or blinded run shows recorded TR frames, and the pictures "
                "between TRs would be rendered from the participant's own latents: set "
                f"renderer.interpolate_fps to 0 (found {self.renderer.interpolate_fps:g})"
            )
        return self

    @model_validator(mode="after")
    def _feedback_without_confidence_fade(self) -> SessionConfig:
        fade = self.console.confidence_fade_below
        if fade is not None and self.feedback.label() != "real":
            raise ValueError(
                "feedback: in a yoked or blinded run the participant's own confidence would "
                "fade the pictures shown and so reveal the condition: set "
                f"console.confidence_fade_below to null (found {fade:g})"
            )
        return self

    @model_validator(mode="after")
    def _curve_keys_where_needed(self) -> SessionConfig:
        security = self.security
        missing = [f"security.{k}" for k in CURVE_KEYS if getattr(security, k) is None]
        if not missing:
            return self
        for key, endpoint in self.zmq_endpoints().items():
            if security.curve_on(endpoint):
                keys = (
                    f"set {', '.join(missing)} (`rt-recon keys DIR` writes the certificates "
                    "and prints these lines)"
                )
                if security.curve == "always":
                    raise ValueError(
                        f"{key} {endpoint!r} needs ZeroMQ CURVE keys because security.curve "
                        f"is always: {keys}"
                    )
                raise ValueError(
                    f"{key} {endpoint!r} is not a loopback endpoint, so it needs ZeroMQ CURVE "
                    f"keys: {keys}, or use a loopback endpoint such as tcp://127.0.0.1:PORT"
                )
        return self

    def resolved(self) -> SessionConfig:
        """A copy with every path expanded and made absolute."""

        def absolute(p: Path) -> Path:
            return p.expanduser().resolve()

        paths = self.paths.model_copy(
            update={
                "output_dir": absolute(self.paths.output_dir),
                "cache_dir": absolute(self.paths.cache_dir),
            }
        )
        decoder = self.decoder
        if decoder.bundle is not None:
            decoder = decoder.model_copy(update={"bundle": absolute(decoder.bundle)})
        renderer = self.renderer
        if renderer.model != EMBEDDED_MODEL:
            renderer = renderer.model_copy(update={"model": str(absolute(Path(renderer.model)))})
        if renderer.tiny_decoder is not None:
            tiny = str(absolute(Path(renderer.tiny_decoder)))
            renderer = renderer.model_copy(update={"tiny_decoder": tiny})
        recorder = self.recorder
        if recorder.path is not None:
            recorder = recorder.model_copy(update={"path": absolute(recorder.path)})
        feedback = self.feedback.model_copy(
            update={
                key: absolute(value)
                for key, value in (
                    ("yoked_recording", self.feedback.yoked_recording),
                    ("study_file", self.feedback.study_file),
                )
                if value is not None
            }
        )
        console = self.console.model_copy(
            update={
                key: absolute(value)
                for key, value in (
                    ("token_file", self.console.token_file),
                    ("dataset", self.console.dataset),
                )
                if value is not None
            }
        )
        security = self.security.model_copy(
            update={
                key: absolute(getattr(self.security, key))
                for key in CURVE_KEYS
                if getattr(self.security, key) is not None
            }
        )
        return self.model_copy(
            update={
                "paths": paths,
                "decoder": decoder,
                "renderer": renderer,
                "recorder": recorder,
                "feedback": feedback,
                "console": console,
                "security": security,
            }
        )

    @property
    def recording_path(self) -> Path:
        """Where the recorder writes: ``recorder.path``, else ``<output_dir>/recording.h5``."""
        return self.recorder.path or self.paths.output_dir / "recording.h5"

    def with_overrides(self, overrides: dict[str, Any], source: str = "overrides") -> SessionConfig:
        """A copy with dotted-key overrides applied, e.g. ``{"replay.speed": 4}``; validated."""
        data = self.model_dump(mode="json")
        for dotted, value in overrides.items():
            node, model = data, type(self)
            *parents, leaf = dotted.split(".")
            for key in parents:
                if not isinstance(node.get(key), dict):
                    raise ConfigError(f"{source}: {dotted}: unknown section {key!r}")
                node, model = node[key], _section_model(model, key)
            node[_field_name(model, leaf)] = value
        return validate_config(data, source)

    def redacted(self) -> SessionConfig:
        """A copy without secrets, for anything written to a file, a log or a recording.

        ``console.token`` becomes None (``console.token_file`` stays: it is a path). Loaded
        back, such a config gets its token from :data:`CONSOLE_TOKEN_ENV`
        (:meth:`secret_env`, :func:`load_config`).
        """
        if self.console.token is None:
            return self
        return self.model_copy(update={"console": self.console.model_copy(update={"token": None})})

    def secret_env(self) -> dict[str, str]:
        """The environment a process started on :meth:`redacted` needs for the secrets it lacks."""
        token = self.console.token
        return {CONSOLE_TOKEN_ENV: token} if token is not None else {}

    def to_json(self, redact: bool = False) -> str:
        """The config as JSON; ``redact=True``: without secrets (:meth:`redacted`), for disk."""
        config = self.redacted() if redact else self
        return json.dumps(config.model_dump(mode="json"), indent=2)


def _section_model(model: type[BaseModel] | None, key: str) -> type[BaseModel] | None:
    """The model of section ``key`` of ``model`` (None: not a section)."""
    field = model.model_fields.get(key) if model is not None else None
    annotation = getattr(field, "annotation", None)
    is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation if is_model else None


def _field_name(model: type[BaseModel] | None, key: str) -> str:
    """The field ``key`` names in ``model``: itself, or the field it is an alias of (an
    override of ``simulation.tr`` sets ``tr_s``, the name the dumped config holds)."""
    if model is None or key in model.model_fields:
        return key
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        if key == alias or (isinstance(alias, AliasChoices) and key in alias.choices):
            return name
    return key


def _describe_error(err: dict[str, Any], data: Any) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        parent_model: type[BaseModel] = SessionConfig
        for part in err["loc"][:-1]:
            section = _section_model(parent_model, str(part))
            if section is None:
                break
            parent_model = section
        allowed = ", ".join(parent_model.model_fields)
        return f"{loc}: unknown key (expected one of: {allowed})"
    if not err["loc"] and kind == "value_error":  # a check across sections: says it all
        return str(err["ctx"]["error"])
    found = err.get("input")
    if err["loc"] and err["loc"][-1] in SECRET_KEYS:  # never echo a secret into a log
        return f"{loc}: {err['msg']}; found a {type(found).__name__} (value not shown)"
    return f"{loc}: {err['msg']}; found {found!r} ({type(found).__name__})"


def validate_config(data: Any, source: str) -> SessionConfig:
    """Validate a parsed mapping into a :class:`SessionConfig`, or raise ConfigError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping of sections at the top level, "
            f"found {type(data).__name__}"
        )
    try:
        return SessionConfig.model_validate(data)
    except ValidationError as exc:
        problems = "\n  ".join(_describe_error(e, data) for e in exc.errors())
        raise ConfigError(f"{source}: invalid session config:\n  {problems}") from None


def with_secrets_from_env(
    config: SessionConfig, source: str, environ: Mapping[str, str] | None = None
) -> SessionConfig:
    """``config`` with ``console.token`` from :data:`CONSOLE_TOKEN_ENV` when that is set.

    Raises:
        ConfigError: the config names a token file, or another token, as well.
    """
    token = (os.environ if environ is None else environ).get(CONSOLE_TOKEN_ENV)
    if not token:
        return config
    console = config.console
    if console.token_file is not None:
        raise ConfigError(
            f"{source}: console.token_file is set and so is the environment variable "
            f"{CONSOLE_TOKEN_ENV}: expected one source of the console token, found two"
        )
    if console.token is not None and console.token != token:
        raise ConfigError(
            f"{source}: console.token differs from the environment variable "
            f"{CONSOLE_TOKEN_ENV}: expected one console token, found two"
        )
    return config.model_copy(update={"console": console.model_copy(update={"token": token})})


def load_config(path: str | Path) -> SessionConfig:
    """Read, validate and resolve a YAML (or JSON) session config file.

    ``console.token`` comes from :data:`CONSOLE_TOKEN_ENV` when that is set
    (:func:`with_secrets_from_env`).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (expected a YAML session config)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return with_secrets_from_env(validate_config(data, str(path)), str(path)).resolved()
