"""The ``rt-recon`` command line.

Subcommands:
  demo        the whole pipeline on the embedded default (no GPU, no downloads)
  decode      run the decoder node      (LSL volumes -> ZeroMQ latents)
  render      run the renderer node     (ZeroMQ latents -> ZeroMQ frames + PNG)
  fit         fit decoders on a dataset's training runs
  simulate    synthetic sessions (``session``) and LSL replay of runs (``replay``)
  console     web console for the operator and display page for the participant

Human output goes to stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from rt_recon.config import SessionConfig, load_config
from rt_recon.errors import RtReconError

log = logging.getLogger("rt_recon")

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import transformers
    from diffusers.utils import logging as diffusers_logging

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()


def _config(args: argparse.Namespace) -> SessionConfig:
    path = args.config or DEFAULT_CONFIG
    config = load_config(path)
    overrides = {key: value for key, value in getattr(args, "overrides", {}).items()}
    return config.with_overrides(overrides, source=str(path)).resolved() if overrides else config


def _cmd_demo(args: argparse.Namespace) -> int:
    from rt_recon.demo import run_demo
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
    print(
        f"\nreconstruction: two-way identification {100 * evaluation.identification:.1f}% "
        f"(chance 50%, feature space: {evaluation.feature_space}), "
        f"PixCorr {evaluation.pixcorr:.3f}, SSIM {evaluation.ssim:.3f}, over "
        f"{evaluation.n_trials} test trials ({evaluation.n_missing} without a frame)"
    )
    print(f"true (top) vs reconstructed (bottom): {result.report.parent / 'reconstructions.png'}")
    print(f"report:    {result.report}")
    print(f"recording: {pipeline.recording}")
    print(f"frames:    {result.frames_dir}")
    print(f"logs:      {pipeline.run_dir / 'logs'}")
    return 0


def _run_node(run, args: argparse.Namespace) -> int:
    from rt_recon.nodes._signals import Stopped, stop_on_signals

    config = _config(args)
    try:
        run(config, stop_on_signals())
    except Stopped:
        log.info("stopped while waiting")
    return 0


def _cmd_decode(args: argparse.Namespace) -> int:
    from rt_recon.nodes.decoder import run_decoder

    return _run_node(run_decoder, args)


def _cmd_render(args: argparse.Namespace) -> int:
    from rt_recon.nodes.renderer import run_renderer

    return _run_node(run_renderer, args)


def _cmd_run(args: argparse.Namespace) -> int:
    from rt_recon.nodes._signals import stop_on_signals
    from rt_recon.nodes.session import run_session

    config = _config(args)
    run_dir = config.paths.output_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved_path = run_dir / "session.json"  # every node reads the same, resolved config
    resolved_path.write_text(config.to_json())
    run_session(config, resolved_path, stop_on_signals())
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rt_recon.dataset import Dataset
    from rt_recon.evaluate.report import write_report
    from rt_recon.evaluate.session_eval import evaluate_recording

    dataset = Dataset.open(args.dataset)
    table = dataset.stimuli()
    stimuli = dict(zip(table, dataset.stimulus_images(list(table)), strict=True))
    with tqdm(total=0, desc="scoring trials", unit="trial", file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        evaluation = evaluate_recording(args.recording, stimuli, progress)
    out = args.out or Path(args.recording).with_suffix("")
    with tqdm(total=1, desc="writing report", file=sys.stderr) as bar:
        report = write_report(evaluation, out)
        bar.update(1)
    print(
        f"{evaluation.n_trials} trials ({evaluation.n_missing} without a frame): "
        f"identification {100 * evaluation.identification:.1f}% ({evaluation.feature_space}), "
        f"PixCorr {evaluation.pixcorr:.3f}, SSIM {evaluation.ssim:.3f}"
    )
    print(f"report: {report}")
    return 0


def _cmd_record(args: argparse.Namespace) -> int:
    from rt_recon.nodes.recorder import run_recorder

    return _run_node(run_recorder, args)


def _cmd_console(args: argparse.Namespace) -> int:
    from rt_recon.display.server import run_console

    return _run_node(run_console, args)


def _cmd_fit(args: argparse.Namespace) -> int:
    from rt_recon.dataset import Dataset
    from rt_recon.decode.dataset_fit import fit_dataset
    from rt_recon.render.model import load_render_model

    config = _config(args)
    model = load_render_model(args.model, with_text=True)
    bundle = fit_dataset(Dataset.open(args.dataset), model, config.fit)
    path = bundle.save(args.out)
    print(f"wrote {path}")
    for head, entry in bundle.report["heads"].items():
        print(
            f"  {head}: {entry['n_voxels']} voxels -> {entry['n_targets']} targets, "
            f"CV R^2 mean {entry['cv_r2_mean']:.3f}"
        )
    return 0


def _cmd_simulate_session(args: argparse.Namespace) -> int:
    from simulators.session import generate_session

    config = _config(args)
    dataset = generate_session(config.simulation, args.out, config.session.subject)
    print(f"wrote synthetic session to {dataset.root}")
    return 0


def _cmd_simulate_replay(args: argparse.Namespace) -> int:
    from rt_recon.acquire.nifti import load_nifti_run
    from rt_recon.nodes._signals import stop_on_signals
    from rt_recon.nodes._status import ReadyWatcher
    from simulators.replay import replay

    config = _config(args)
    stop = stop_on_signals()
    run = load_nifti_run(args.run, args.events)
    speed = args.speed if args.speed is not None else config.replay.speed
    ready = ReadyWatcher(args.await_ready, config.stream.source_id) if args.await_ready else None
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
    )
    if ready is not None:
        ready.close()
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

    with_config(sub.add_parser("decode", help="run the decoder node")).set_defaults(
        func=_cmd_decode
    )
    with_config(sub.add_parser("render", help="run the renderer node")).set_defaults(
        func=_cmd_render
    )

    evaluate = sub.add_parser("evaluate", help="score a recorded session; write an HTML report")
    evaluate.add_argument("recording", type=Path, help="recording file (.h5)")
    evaluate.add_argument(
        "--dataset",
        type=Path,
        required=True,
        help="dataset folder with the stimuli that were shown",
    )
    evaluate.add_argument("--out", type=Path, help="report folder (default: beside the recording)")
    evaluate.set_defaults(func=_cmd_evaluate)

    run = sub.add_parser("run", help="start a session's nodes and keep them running")
    run.add_argument("config", type=Path, help="session config (YAML)")
    run.set_defaults(func=_cmd_run)

    with_config(sub.add_parser("record", help="run the recorder node")).set_defaults(
        func=_cmd_record
    )

    with_config(
        sub.add_parser("console", help="serve the operator console and the participant display")
    ).set_defaults(func=_cmd_console)

    fit = with_config(sub.add_parser("fit", help="fit decoders on a dataset's training runs"))
    fit.add_argument("dataset", type=Path, help="dataset folder (with dataset.json)")
    fit.add_argument("--model", type=Path, required=True, help="diffusers-format model folder")
    fit.add_argument("--out", type=Path, required=True, help="bundle file to write (.safetensors)")
    fit.set_defaults(func=_cmd_fit)

    simulate = sub.add_parser("simulate", help="synthetic sessions and replay")
    sim_sub = simulate.add_subparsers(dest="simulate_command", required=True)
    session = with_config(sim_sub.add_parser("session", help="generate a synthetic session"))
    session.add_argument("--out", type=Path, required=True, help="folder to write")
    session.set_defaults(func=_cmd_simulate_session)
    rep = with_config(sim_sub.add_parser("replay", help="replay a 4D NIfTI run over LSL"))
    rep.add_argument("run", type=Path, help="4D NIfTI run")
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
    rep.set_defaults(func=_cmd_simulate_replay)
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
