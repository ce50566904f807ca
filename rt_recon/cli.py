"""The ``rt-recon`` command line.

Subcommands:
  demo        the whole pipeline on the embedded default (no GPU, no downloads)
  decode      run the decoder node      (LSL volumes -> ZeroMQ latents)
  render      run the renderer node     (ZeroMQ latents -> ZeroMQ frames + PNG)
  fit         fit decoders on a dataset's training runs
  simulate    synthetic sessions (``session``), LSL replay of runs (``replay``), a
              scanner's export folder written at TR pace (``export``) and the synthetic
              participant in the scanner, live (``participant``)
  bridge      stream a scanner's real-time export folder over LSL
  convert     write a recorded series (DICOM, PAR/REC, NIfTI) as one 4D NIfTI
  console     web console for the operator and display page for the participant
  run         a whole session: its nodes as supervised processes
  record      run the recorder node     (everything, into one crash-safe HDF5 file)
  replay      re-run a recording through decoder, renderer and a new recorder
  evaluate    score a recording against the pictures shown; HTML report
  keys        ZeroMQ CURVE certificates for non-loopback endpoints (server, client)
  present     a training run's pictures (or word cues, for imagery) on the participant
              display, onsets as LSL markers

Human output goes to stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.resources
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from rt_recon.config import SessionConfig, load_config
from rt_recon.errors import ConfigError, RtReconError

if TYPE_CHECKING:
    from rt_recon.apps.session import Session, SessionSummary

log = logging.getLogger("rt_recon")


def shipped_config(name: str) -> Path:
    """The session config ``name`` shipped with the package (the repository's ``configs/``).

    Found with :mod:`importlib.resources`, so it is there in a wheel as in a checkout.
    """
    configs = importlib.resources.files("rt_recon.configs")
    path = Path(str(configs / name))
    if not path.is_file():
        shipped = sorted(p.name for p in configs.iterdir() if p.name.endswith(".yaml"))
        raise ConfigError(f"no shipped config {name!r}: expected one of {', '.join(shipped)}")
    return path


#: The embedded default: what every command with ``--config`` reads when given none.
DEFAULT_CONFIG = shipped_config("demo.yaml")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _config(args: argparse.Namespace) -> SessionConfig:
    path = args.config or DEFAULT_CONFIG
    config = load_config(path)
    overrides = {key: value for key, value in getattr(args, "overrides", {}).items()}
    return config.with_overrides(overrides, source=str(path)).resolved() if overrides else config


def _cmd_demo(args: argparse.Namespace) -> int:
    from rt_recon.apps.demo import run_demo
    from rt_recon.evaluate.latency import format_table

    overrides = {}
    if args.speed is not None:
        overrides["replay.speed"] = args.speed
    if args.output is not None:
        overrides["paths.output_dir"] = str(args.output)
    args.overrides = overrides
    result = run_demo(_config(args))
    pipeline, evaluation = result.pipeline, result.evaluation
    print(
        f"\nrt-recon demo: {len(pipeline.latents)} latents for {pipeline.n_trs} TRs, "
        f"{len(pipeline.frames)} frames rendered, {pipeline.skipped_frames} stale latents skipped"
    )
    print("\nper-stage latency (volume timestamp -> frame published, LSL clock)")
    print(format_table(pipeline.latency))
    print("\nreconstruction of the test run, each figure beside its baselines (docs/metrics.md)")
    for line in evaluation.headline().splitlines():
        print(f"  {line}")
    for warning in evaluation.warnings:
        print(f"warning: {warning}")
    print(f"true (top) vs reconstructed (bottom): {result.report.parent / 'reconstructions.png'}")
    print(f"report:    {result.report}")
    print(f"recording: {pipeline.recording}")
    print(f"frames:    {result.frames_dir}")
    print(f"logs:      {pipeline.run_dir / 'logs'}")
    return 0


#: The node each node command runs: ``module:function(config, stop)``.
_NODE_RUNNERS = {
    "decode": "rt_recon.nodes.decoder:run_decoder",
    "render": "rt_recon.nodes.renderer:run_renderer",
    "record": "rt_recon.nodes.recorder:run_recorder",
    "console": "rt_recon.display.server:run_console",
}


def _cmd_node(args: argparse.Namespace) -> int:
    """Run a node process until SIGTERM or SIGINT."""
    from rt_recon.nodes.signals import stop_on_signals

    module, function = _NODE_RUNNERS[args.command].split(":")
    run = getattr(importlib.import_module(module), function)
    run(_config(args), stop_on_signals())
    return 0


@contextlib.contextmanager
def _progress(desc: str, unit: str = "it") -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr, as a ``progress(done, total)`` callback."""
    from tqdm import tqdm

    with tqdm(total=0, desc=desc, unit=unit, file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        yield progress


def _token_source(config: SessionConfig, config_path: Path) -> str:
    """Where the console's token comes from, in words (the token itself is never printed)."""
    from rt_recon.config import CONSOLE_TOKEN_ENV

    if config.console.token_file is not None:
        return f"the file {config.console.token_file} (console.token_file)"
    if os.environ.get(CONSOLE_TOKEN_ENV):
        return f"the environment variable {CONSOLE_TOKEN_ENV}"
    return f"console.token in {config_path}"


def _print_session_start(session: Session, config_path: Path) -> None:
    from rt_recon.apps.session import console_url

    config = session.config
    print(f"rt-recon run: started {', '.join(session.nodes)} (Ctrl-C to stop)", flush=True)
    if "console" in session.nodes:
        base = console_url(config)
        print(f"  console:     {base}/console", flush=True)
        print(f"  participant: {base}/participant", flush=True)
        if config.console.token is not None or config.console.token_file is not None:
            print(
                "  access token required: open the page with ?token=<token>; the token is in "
                f"{_token_source(config, config_path)} (not printed here)",
                flush=True,
            )
    recording = session.recording_path
    print(f"  recording:   {recording if recording is not None else 'none (no recorder)'}")
    print(f"  config:      {session.config_path} (without secrets)")
    print(f"  logs:        {session.log_dir}", flush=True)


def _print_session_summary(summary: SessionSummary) -> None:
    print(f"\nrt-recon run: session ended after {summary.duration_s:.0f} s")
    if summary.trs is not None:
        runs = f" over {summary.runs} runs" if summary.runs and summary.runs > 1 else ""
        print(
            f"  TRs:       {summary.trs}{runs} ({summary.missed} missed, {summary.skipped} skipped)"
        )
    else:
        print("  TRs:       none (no decoder heartbeat heard)")
    if summary.frames is not None:
        print(f"  frames:    {summary.frames} rendered")
    else:
        print("  frames:    none (no renderer heartbeat heard)")
    if summary.recording is None:
        print("  recording: none written")
    elif summary.recording_problem is not None:
        print(f"  recording: {summary.recording} ({summary.recording_problem})")
    else:
        held = ", ".join(f"{n} {group}" for group, n in summary.recorded.items())
        print(f"  recording: {summary.recording} ({held})")
    for line in summary.not_decoded:
        print(f"  not decoded: {line}")
    sys.stdout.flush()


def _cmd_run(args: argparse.Namespace) -> int:
    from rt_recon.apps.session import Session
    from rt_recon.nodes.signals import stop_on_signals

    session = Session(_config(args))  # preflight: nothing starts, nothing is written if it fails
    stop = stop_on_signals()
    try:
        session.run(stop, on_started=lambda: _print_session_start(session, args.config))
    finally:
        if session.summary is not None:
            _print_session_summary(session.summary)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from rt_recon.apps.demo import add_world_baselines
    from rt_recon.dataset import Dataset
    from rt_recon.evaluate.report import write_report
    from rt_recon.evaluate.session_eval import evaluate_recording

    if args.stimuli is not None:  # a visit's own stimulus folder: no world to draw from
        from rt_recon.apps.fit_inputs import read_stimulus_table
        from rt_recon.dataset import read_picture

        folder = Path(args.stimuli)
        shown = read_stimulus_table(folder / "stimuli.tsv", folder)
        stimuli = {sid: read_picture(s.picture) for sid, s in shown.items()}
        dataset = None
    else:
        dataset = Dataset.open(args.dataset)
        table = dataset.stimuli()
        stimuli = dict(zip(table, dataset.stimulus_images(list(table)), strict=True))
    with _progress("scoring trials", "trial") as progress:
        evaluation = evaluate_recording(args.recording, stimuli, progress)
    add_world_baselines(evaluation, dataset, evaluation.render_model)
    out = args.out or Path(args.recording).with_suffix("")
    with _progress("writing report") as progress:
        report = write_report(evaluation, out)
        progress(1, 1)
    if (feedback := evaluation.feedback_line()) is not None:
        print(feedback)
    print(evaluation.headline())
    for warning in evaluation.warnings:
        print(f"warning: {warning}")
    print(f"report: {report}")
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from rt_recon.apps.replay import replay_recording
    from rt_recon.evaluate.latency import format_table

    result, same = replay_recording(args.recording, args.output, args.speed, args.asap)
    print(
        f"replayed {result.n_trs} TRs: {len(result.latents)} latents, {len(result.frames)} "
        f"frames, {result.skipped_frames} stale latents skipped"
    )
    print(format_table(result.latency))
    print(
        f"latents identical to the original recording at {same.identical} of {same.compared} "
        f"TRs (max abs difference {same.max_abs_difference:g})"
    )
    print(f"new recording: {result.recording}")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from rt_recon.apps.fit import fit_from_inputs
    from rt_recon.apps.fit_sources import open_fit_inputs, parse_mask_option
    from rt_recon.render.embedded import resolve_model
    from rt_recon.render.model import load_render_model

    config = _config(args)
    # every data error (files, runs, pictures, captions, grids) before the model loads
    inputs = open_fit_inputs(
        args.dataset, train_runs=args.train_runs, validation_runs=args.validation_runs,
        subject=args.subject, task=args.task, recordings=args.recordings, series=args.series,
        events=args.events, stimuli=args.stimuli,
        masks=dict(parse_mask_option(m) for m in args.mask),
    )  # fmt: skip
    model_path = resolve_model(args.model if args.model is not None else config.renderer.model)
    device = args.device if args.device is not None else config.renderer.device
    log.info("fitting for the render model in %s (encoding on %s)", model_path, device)
    model = load_render_model(model_path, device=device, with_text=True)
    with _progress("fitting (runs, then heads)") as progress:
        fitted = fit_from_inputs(
            inputs, model, config.fit, progress=progress, caption_bank=args.caption_bank
        )
    path, report, masks = fitted.save(args.out)
    bundle = fitted.bundle
    print(f"wrote {path}\nfit report: {report}")
    print(f"  from {inputs.origin}: {len(inputs.train)} training runs")
    for name, mask in masks.items():
        print(f"  mask {name}: {mask}")
    if bundle.caption_bank is not None:
        bank = bundle.caption_bank
        print(f"  c snaps to the nearest of {len(bank)} captions ({bank.source})")
    for head, entry in bundle.report["heads"].items():
        alphas = ", ".join(f"{a}: {n}" for a, n in entry["alphas_chosen"].items() if n)
        print(
            f"  {head}: {entry['n_voxels']} voxels -> {entry['n_targets']} targets, "
            f"CV R^2 mean {entry['cv_r2_mean']:.3f} (median {entry['cv_r2_median']:.3f}); "
            f"alphas chosen {alphas}"
        )
    return 0


def _cmd_simulate_session(args: argparse.Namespace) -> int:
    from rt_recon.simulators.session import generate_session

    config = _config(args)
    dataset = generate_session(config.simulation, args.out, config.session.subject)
    print(f"wrote synthetic session to {dataset.root}")
    return 0


def _read_options(args: argparse.Namespace):
    from rt_recon.acquire.formats import ReadOptions

    return ReadOptions(
        slices_per_volume=args.slices, philips_image_type=args.philips_image_type, tr_s=args.tr_s
    )


def _add_read_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tr", dest="tr_s", type=float, help="repetition time in s (overrides the headers)"
    )
    p.add_argument("--series", help="series number to use when the folder holds several")
    p.add_argument("--slices", type=int, help="slices per volume (single-slice DICOM)")
    p.add_argument(
        "--philips-image-type", type=int, help="PAR/REC image_type_mr to use (default: magnitude)"
    )


def _cmd_simulate_replay(args: argparse.Namespace) -> int:
    from rt_recon.nodes.signals import stop_on_signals

    stop = stop_on_signals()  # first: a SIGTERM during the imports below still stops cleanly
    from rt_recon.nodes.ready import ReadyWatcher
    from rt_recon.nodes.replay import DecoderAck, replay
    from rt_recon.record.runs import load_run

    config = _config(args)
    run = load_run(args.run, args.events, _read_options(args), args.series, args.stream)
    speed = args.speed if args.speed is not None else config.replay.speed
    ready = (
        ReadyWatcher(args.await_ready, config.stream.source_id, curve=config.security)
        if args.await_ready
        else None
    )
    ack = (
        DecoderAck(
            args.ack_endpoint or config.decoder.latents_endpoint,
            config.session.id,
            args.run_id,
            curve=config.security,
            frames_endpoint=args.ack_frames,
        )
        if args.asap
        else None
    )
    replay(
        run,
        name=config.stream.name,
        source_id=config.stream.source_id,
        markers_name=config.stream.markers_name,
        markers_source_id=config.stream.markers_source_id,
        speed=speed,
        session=config.session.id,
        run_id=args.run_id,
        consumer_timeout=config.stream.resolve_timeout_s,
        stop=stop,
        buffer_trs=config.stream.buffer_trs,
        ready=ready,
        loop=args.loop,
        pace="asap" if args.asap else "realtime",
        ack=ack,
        window=args.window,
    )
    if ready is not None:
        ready.close()
    if ack is not None:
        ack.close()
    return 0


def _cmd_simulate_export(args: argparse.Namespace) -> int:
    from rt_recon.nodes.signals import stop_on_signals
    from rt_recon.simulators.scanner_export import export_series

    report = export_series(
        args.series_path,
        args.dest,
        tr_s=args.tr_s,
        speed=args.speed,
        atomic=args.atomic,
        stop=stop_on_signals(),
        options=_read_options(args),
    )
    print(f"wrote {len(report.written)} files to {args.dest}")
    return 0


def _cmd_simulate_participant(args: argparse.Namespace) -> int:
    from rt_recon.nodes.signals import stop_on_signals

    stop = stop_on_signals()
    from rt_recon.simulators.live_scan import LiveScanOptions, simulate_participant

    options = LiveScanOptions(
        series=args.series,
        n_trs=args.trs,
        tr_s=args.tr_s,
        seed=args.seed,
        day=args.day,
        start_delay_s=args.start_delay,
        atomic=args.atomic,
        markers=not args.no_markers,
    )
    report = simulate_participant(_config(args), args.export, options, stop)
    print(
        f"series {report.series}: wrote {report.n_volumes} volumes to {args.export} "
        f"({len(report.shown)} pictures shown, stopped by {report.stopped_by})"
    )
    return 0


def _cmd_bridge(args: argparse.Namespace) -> int:
    from rt_recon.acquire.bridge import BridgeOptions, run_bridge
    from rt_recon.nodes.ready import ReadyWatcher
    from rt_recon.nodes.signals import stop_on_signals

    config = _config(args)
    if args.await_nodes is not None:
        config = config.with_overrides({"bridge.await_nodes": args.await_nodes})
    awaited = config.bridge_awaits()
    source_id = config.stream.source_id

    def await_ready(stream_uid: str) -> ReadyWatcher:
        return ReadyWatcher(awaited, source_id, curve=config.security, stream_uid=stream_uid)

    consumer_wait = config.bridge.consumer_wait_s
    options = BridgeOptions(
        name=config.stream.name,
        source_id=config.stream.source_id,
        session=config.session.id,
        read=_read_options(args),
        clock=args.clock,
        speed=args.speed,
        reorder_wait=args.reorder_wait,
        consumer_wait=consumer_wait if args.consumer_wait is None else args.consumer_wait,
        await_ready=await_ready if awaited else None,
        buffer_trs=config.stream.buffer_trs,
        series=args.series,
        watch_mode="poll" if args.poll else "events",
        poll_interval=args.poll_interval,
        settle=args.settle,
        give_up=args.give_up,
        include_existing=args.existing,
        idle_stop=args.idle_stop,
    )
    report = run_bridge(args.watch, options, stop_on_signals())
    print(f"rt-recon bridge: {report.summary()}")
    for name, reason in report.unreadable:
        print(f"  unreadable: {name}: {reason}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from rt_recon.acquire.convert import write_series_nifti
    from rt_recon.acquire.series import read_series

    series = read_series(args.series_path, _read_options(args), args.series)
    out, sidecar = write_series_nifti(series, args.out)
    shape = "x".join(str(s) for s in series.shape)
    print(
        f"wrote {out}: {shape}, {len(series.volumes)} volumes, TR {series.tr_s:g} s "
        f"(series {series.label}); sidecar {sidecar.name}"
    )
    for what, items in (("missing volumes", series.missing), ("duplicates", series.duplicates)):
        if items:
            print(f"  {what}: {items}")
    for path, reason in series.unreadable:
        print(f"  unreadable: {path.name}: {reason}")
    return 0


def _cmd_keys(args: argparse.Namespace) -> int:
    import zmq.auth

    from rt_recon.transport.curve import write_certificates

    files = write_certificates(args.dir, overwrite=args.force)
    server_public, _ = zmq.auth.load_certificate(files.server_public)
    print(f"wrote ZeroMQ CURVE certificates to {args.dir}:")
    print(f"  {files.server_secret.name}  secret: only on the machines that publish")
    print(f"  {files.server_public.name}  public: on every machine that subscribes")
    print(f"  {files.client_secret.name}  secret: on the machines that subscribe")
    print(
        f"  {files.authorized_clients.name}/  public keys of the clients let in; "
        "add a *.key file per extra client"
    )
    print(f"server public key (Z85, for clients in other languages): {server_public.decode()}")
    print("\nconfig lines:\n")
    print(files.config_lines(), end="")
    return 0


def _cmd_present(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from rt_recon.apps.present import PresentOptions, events_path, present_run
    from rt_recon.display.design import DesignSpec
    from rt_recon.nodes.signals import stop_on_signals

    config = _config(args)
    try:
        # cue_s only when given: a vision run refuses it, an imagery run has its default
        cue = {} if args.cue_s is None else {"cue_s": args.cue_s}
        spec = DesignSpec(
            task=args.task,
            **cue,
            duration_s=args.duration,
            isi_s=args.isi,
            lead_in_s=args.lead_in,
            lead_out_s=args.lead_out,
            n_blank=args.blanks,
            test_ids=tuple(int(i) for i in args.test_ids.split(",") if i.strip()),
            test_repeats=args.test_repeats,
            n_catch=args.catch,
            seed=args.seed,
        )
    except (ValidationError, ValueError) as exc:
        raise ConfigError(f"rt-recon present: bad design option: {exc}") from None
    keys = tuple(k for k in args.response_keys.split(",") if k)
    if args.trigger_key in keys:
        raise ConfigError(
            f"rt-recon present: --trigger-key {args.trigger_key!r} is also a response key {keys}"
        )
    options = PresentOptions(args.run, args.start_on, args.trigger_key, keys)
    events = args.events or events_path(config, args.run)
    start = f"trigger key {args.trigger_key!r}" if args.start_on == "key" else "first volume"
    page = f"http://{config.console.host}:{config.console.port}/participant"
    print(f"design: {events}\nparticipant display: {page} (starts on the {start})")
    result = present_run(
        config, args.stimuli, spec, options, stop_on_signals(), table=args.table, events=events
    )
    if result.start is None or result.end is None:
        print(f"run {args.run} did not {'start' if result.start is None else 'end'}")
        return 1
    late = sorted(result.late_ms.values())
    print(
        f"run {args.run}: {len(result.onsets)} onsets, {len(result.responses)} responses; "
        f"onset after plan median {late[len(late) // 2] if late else float('nan'):.1f} ms; "
        f"page clock round trip {result.clock.get('rtt_ms', float('nan')):.2f} ms"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rt-recon", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", type=Path, help=f"session config (default {DEFAULT_CONFIG})")
        return p

    demo = with_config(
        sub.add_parser("demo", help="run the whole pipeline on the embedded default")
    )
    demo.add_argument("--speed", type=float, help="replay speed (overrides replay.speed)")
    demo.add_argument("--output", type=Path, help="output folder (overrides paths.output_dir)")
    demo.set_defaults(func=_cmd_demo)

    with_config(sub.add_parser("decode", help="run the decoder node")).set_defaults(func=_cmd_node)
    with_config(sub.add_parser("render", help="run the renderer node")).set_defaults(func=_cmd_node)

    evaluate = sub.add_parser("evaluate", help="score a recorded session; write an HTML report")
    evaluate.add_argument("recording", type=Path, help="recording file (.h5)")
    shown = evaluate.add_mutually_exclusive_group(required=True)
    shown.add_argument(
        "--dataset", type=Path, help="dataset folder with the stimuli that were shown"
    )
    shown.add_argument(
        "--stimuli", type=Path,
        help="or the stimulus folder the presenter showed (stimuli.tsv: stimulus_id, file)",
    )  # fmt: skip
    evaluate.add_argument("--out", type=Path, help="report folder (default: beside the recording)")
    evaluate.set_defaults(func=_cmd_evaluate)

    replay_cmd = sub.add_parser(
        "replay", help="re-run a recorded session through decoder, renderer and a new recorder"
    )
    replay_cmd.add_argument("recording", type=Path, help="recording file (.h5)")
    replay_cmd.add_argument("--speed", type=float, default=1.0, help="pace, x real time")
    replay_cmd.add_argument(
        "--asap", action="store_true", help="as fast as the renderer takes (every TR rendered)"
    )
    replay_cmd.add_argument("--output", type=Path, help="output folder (default: beside it)")
    replay_cmd.set_defaults(func=_cmd_replay)

    run = sub.add_parser("run", help="start a session's nodes and keep them running")
    run.add_argument("config", type=Path, help="session config (YAML)")
    run.set_defaults(func=_cmd_run)

    with_config(sub.add_parser("record", help="run the recorder node")).set_defaults(func=_cmd_node)

    with_config(
        sub.add_parser("console", help="serve the operator console and the participant display")
    ).set_defaults(func=_cmd_node)

    fit = with_config(sub.add_parser("fit", help="fit decoders on a dataset's training runs"))
    fit.add_argument(
        "dataset", type=Path, nargs="?",
        help="dataset folder: an rt_recon dataset (dataset.json) or a BIDS dataset",
    )  # fmt: skip
    bids = fit.add_argument_group("runs of a BIDS dataset (docs/operators.md)")
    bids.add_argument(
        "--train-runs", nargs="+", default=[], metavar="RUN",
        help="training runs by BIDS entities: 3, run-3 or ses-02_run-4 (at least two)",
    )  # fmt: skip
    bids.add_argument(
        "--validation-runs", nargs="+", default=[], metavar="RUN",
        help="held-out runs, checked with the training runs and listed in the report",
    )  # fmt: skip
    bids.add_argument("--subject", help="subject label (default: the dataset's only one)")
    bids.add_argument("--task", help="task label (default: the subject's only one)")
    visit = fit.add_argument_group("a visit's own files")
    visit.add_argument(
        "--recordings", nargs="+", default=[], metavar="H5",
        help="the recorder's files; each part (run) is a training run; A.h5:7 picks run 7",
    )  # fmt: skip
    visit.add_argument(
        "--series", nargs="+", default=[], metavar="SERIES",
        help="scanner series (DICOM folder, PAR/REC or NIfTI file), one per training run",
    )  # fmt: skip
    visit.add_argument(
        "--events", nargs="+", default=[], metavar="TSV", help="one events.tsv per --series"
    )
    visit.add_argument(
        "--stimuli", type=Path,
        help="picture folder with stimuli.tsv (stimulus_id, caption, file): the pictures shown",
    )  # fmt: skip
    fit.add_argument(
        "--mask", action="append", default=[], metavar="NAME=FILE",
        help="a mask by name (ev: z head, hv: c head, brain: noise pool), NIfTI on any grid; "
        "repeatable; replaces the source's mask of that name",
    )  # fmt: skip
    fit.add_argument(
        "--model",
        help="the render model the bundle is for: 'embedded' (the shipped default) or a "
        "diffusers-format folder (default: renderer.model of --config, 'embedded' in the "
        "default config)",
    )
    fit.add_argument(
        "--device",
        help="where the render model encodes the training pictures and captions, float32 "
        "(default: renderer.device of --config: cpu, or cuda on a GPU machine)",
    )
    fit.add_argument(
        "--caption-bank", type=Path, metavar="TXT",
        help="captions c snaps to when fit.recipe.snap_c is on, one a line (default: the "
        "render model's caption_bank.txt)",
    )  # fmt: skip
    fit.add_argument("--out", type=Path, required=True, help="bundle file to write (.safetensors)")
    fit.set_defaults(func=_cmd_fit)

    simulate = sub.add_parser("simulate", help="synthetic sessions and replay")
    sim_sub = simulate.add_subparsers(dest="simulate_command", required=True)
    session = with_config(sim_sub.add_parser("session", help="generate a synthetic session"))
    session.add_argument("--out", type=Path, required=True, help="folder to write")
    session.set_defaults(func=_cmd_simulate_session)
    rep = with_config(
        sim_sub.add_parser(
            "replay", help="replay a recorded run (NIfTI, DICOM series, XDF) over LSL"
        )
    )
    rep.add_argument(
        "run",
        type=Path,
        help="4D NIfTI, a scanner series (DICOM/PAR/REC/NIfTI folder or file) or an .xdf recording",
    )
    rep.add_argument("--events", type=Path, help="BIDS events.tsv to replay as markers")
    rep.add_argument("--speed", type=float, help="replay speed (overrides replay.speed)")
    rep.add_argument("--run-id", default="01", help="run identifier sent in the stream metadata")
    rep.add_argument(
        "--await-ready",
        action="append",
        metavar="ENDPOINT",
        default=[],
        help="start only once the node publishing status here is streaming (repeatable)",
    )
    rep.add_argument(
        "--loop",
        type=int,
        nargs="?",
        const=0,
        default=1,
        metavar="N",
        help="play the run N times back to back; --loop alone: until stopped",
    )
    rep.add_argument(
        "--asap",
        action="store_true",
        help="as fast as the decoder takes volumes (back-pressure from its ZeroMQ publisher)",
    )
    rep.add_argument(
        "--ack-endpoint", help="decoder publisher for --asap (default: decoder.latents_endpoint)"
    )
    rep.add_argument(
        "--ack-frames",
        metavar="ENDPOINT",
        help="--asap: pace by the renderer publishing frames here too (every TR rendered)",
    )
    rep.add_argument("--window", type=int, default=2, help="--asap: volumes in flight at most")
    rep.add_argument("--stream", help="XDF: name of the volume stream when there are several")
    _add_read_options(rep)
    rep.set_defaults(func=_cmd_simulate_replay)

    export = sim_sub.add_parser(
        "export", help="write a recorded series into a folder at TR pace, as a scanner's export"
    )
    export.add_argument("series_path", type=Path, help="recorded series (folder or file)")
    export.add_argument("dest", type=Path, help="export folder to write (a bridge watches it)")
    export.add_argument("--speed", type=float, default=1.0, help="times faster than real time")
    export.add_argument(
        "--atomic", action="store_true", help="write a temporary name, then rename (else in place)"
    )
    _add_read_options(export)
    export.set_defaults(func=_cmd_simulate_export)

    participant = with_config(
        sim_sub.add_parser(
            "participant",
            help="the synthetic participant in the scanner: sees the presenter's markers, "
            "writes one XA DICOM per TR into an export folder (a rehearsal; docs/operators.md)",
        )
    )
    participant.add_argument(
        "--export", type=Path, required=True, help="export folder to write (a bridge watches it)"
    )
    participant.add_argument(
        "--series", type=int, default=1, help="series number of this run (a new one per run)"
    )
    participant.add_argument(
        "--trs", type=int, default=300, help="volumes at most (stops earlier on run_end)"
    )
    participant.add_argument(
        "--tr", dest="tr_s", type=float, help="repetition time in s (default simulation.tr_s)"
    )
    participant.add_argument(
        "--seed", type=int, help="noise seed (default simulation.seed; the run's own noise)"
    )
    participant.add_argument(
        "--day", type=int, default=1, help="realistic participant: scanning session (1, 2, ...)"
    )
    participant.add_argument(
        "--start-delay", type=float, default=1.0, help="seconds before the first volume"
    )
    participant.add_argument(
        "--atomic", action="store_true", help="write a temporary name, then rename (else in place)"
    )
    participant.add_argument(
        "--no-markers", action="store_true", help="no presenter: a run of blank screen"
    )
    participant.set_defaults(func=_cmd_simulate_participant)

    bridge = with_config(
        sub.add_parser("bridge", help="stream a scanner's real-time export folder over LSL")
    )
    bridge.add_argument("--watch", type=Path, required=True, help="the export folder to watch")
    bridge.add_argument(
        "--poll", action="store_true", help="poll the folder (network shares) instead of inotify"
    )
    bridge.add_argument("--poll-interval", type=float, default=0.05, help="--poll: seconds")
    bridge.add_argument(
        "--settle", type=float, default=0.25, help="--poll: seconds a file must stay unchanged"
    )
    bridge.add_argument(
        "--give-up",
        type=float,
        default=5.0,
        help="report an incomplete file after this many seconds without a change",
    )
    bridge.add_argument(
        "--clock",
        choices=["anchored", "synced", "arrival"],
        default="anchored",
        help="acquisition time -> LSL clock (docs/acquire.md)",
    )
    bridge.add_argument(
        "--speed", type=float, default=1.0, help="files arrive this much faster than real time"
    )
    bridge.add_argument(
        "--reorder-wait",
        type=float,
        default=0.3,
        help="seconds a volume after a gap waits for the missing one",
    )
    bridge.add_argument(
        "--consumer-wait",
        type=float,
        help="seconds a new series' first volume waits for its consumers "
        "(default: bridge.consumer_wait_s, 30)",
    )
    bridge.add_argument(
        "--await-nodes",
        nargs="*",
        choices=["decoder", "recorder"],
        help="the nodes a new series' first volume waits for (their heartbeats show their "
        "inlets on its stream; default: bridge.await_nodes, decoder and recorder); "
        "with no names, any one inlet",
    )
    bridge.add_argument(
        "--existing", action="store_true", help="also stream files already in the folder"
    )
    bridge.add_argument(
        "--idle-stop", type=float, help="stop after this many seconds without a new file"
    )
    _add_read_options(bridge)
    bridge.set_defaults(func=_cmd_bridge)

    convert = sub.add_parser(
        "convert", help="write a recorded series (DICOM, PAR/REC, NIfTI) as one 4D NIfTI"
    )
    convert.add_argument("series_path", type=Path, help="series folder or file")
    convert.add_argument("out", type=Path, help="output .nii or .nii.gz (a .json sidecar beside)")
    _add_read_options(convert)
    convert.set_defaults(func=_cmd_convert)

    keys = sub.add_parser("keys", help="write ZeroMQ CURVE certificates for non-loopback endpoints")
    keys.add_argument("dir", type=Path, help="folder to write the certificates into")
    keys.add_argument("--force", action="store_true", help="replace certificates already there")
    keys.set_defaults(func=_cmd_keys)

    present = with_config(
        sub.add_parser(
            "present",
            help="show a training run's pictures (or cue them to be imagined) on the "
            "participant display",
        )
    )
    present.add_argument(
        "stimuli", type=Path,
        help="picture folder with stimuli.tsv (stimulus_id, caption, file; optional cue: an "
        "imagery trial's words, default the caption)",
    )  # fmt: skip
    present.add_argument("--table", type=Path, help="stimulus TSV (default STIMULI/stimuli.tsv)")
    present.add_argument("--run", default="01", help="run id the markers carry (default 01)")
    present.add_argument(
        "--start-on", choices=("key", "volume"), default="key",
        help="start on the trigger key, or on the first volume of stream.source_id",
    )  # fmt: skip
    present.add_argument("--trigger-key", default="5", help="the scanner's trigger key (default 5)")
    present.add_argument(
        "--response-keys", default="1,2", help="attention-task keys, comma-separated (default 1,2)"
    )
    present.add_argument(
        "--task", choices=("vision", "imagery"), default="vision",
        help="vision: show the pictures (default); imagery: show each one's word cue, then a "
        "fixation cross while the participant imagines it",
    )  # fmt: skip
    present.add_argument(
        "--cue-s", type=float, default=None,
        help="imagery: seconds the word cue is shown (default 1.5)",
    )  # fmt: skip
    present.add_argument(
        "--duration", type=float, default=3.0,
        help="seconds a picture is up (imagery: the imagining period)",
    )  # fmt: skip
    present.add_argument("--isi", type=float, default=1.0, help="fixation after each trial, s")
    present.add_argument("--lead-in", type=float, default=0.0, help="fixation before, s")
    present.add_argument("--lead-out", type=float, default=0.0, help="fixation after, s")
    present.add_argument("--blanks", type=int, default=0, help="blank (fixation-only) trials")
    present.add_argument("--test-ids", default="", help="test-set stimulus ids, comma-separated")
    present.add_argument("--test-repeats", type=int, default=1, help="showings per test stimulus")
    present.add_argument("--catch", type=int, default=0, help="catch trials (a repeat: press)")
    present.add_argument("--seed", type=int, default=0, help="seed of the trial order")
    present.add_argument(
        "--events", type=Path, help="events.tsv to write (default OUTPUT_DIR/run-RUN_events.tsv)"
    )
    present.set_defaults(func=_cmd_present)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except RtReconError as exc:
        log.error("%s", exc)
        print(f"rt-recon: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rt-recon: interrupted", file=sys.stderr)
        return 130
