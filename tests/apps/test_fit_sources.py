"""``rt-recon fit`` from what a visit produces: a BIDS dataset (no dataset.json), the
recorder's files, scanner series; every data error named before a model loads.

The small synthetic session is an rt_recon dataset and a BIDS dataset at once: fitted
both ways on the same runs, it gives the same weights. So do two recordings of its
training runs written with the recorder's own writer (one of them in two segments).
"""

from __future__ import annotations

import csv
import itertools
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from rt_recon.acquire.masks import load_mask
from rt_recon.acquire.nifti import RecordedRun, load_nifti_run
from rt_recon.apps.fit import DEFAULT_HEAD_MASKS, fit_from_inputs, mask_voxels
from rt_recon.apps.fit_bids import bids_inputs
from rt_recon.apps.fit_inputs import FitRun
from rt_recon.apps.fit_recorded import recording_inputs, series_inputs
from rt_recon.apps.fit_sources import open_fit_inputs
from rt_recon.cli import main
from rt_recon.config import FitSection
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.decode.recipe import DecoderRecipe
from rt_recon.errors import DataError
from rt_recon.nodes.recorder import stream_attrs
from rt_recon.protocol import VolumeStreamMeta
from rt_recon.record.recording import RecordingShapes, RecordingWriter
from rt_recon.record.segments import segment_path
from rt_recon.render.model import load_render_model

#: As the ``small_bundle_path`` fixture fits the manifest's training runs.
FIT = FitSection(alphas=(1.0, 100.0, 1e4))
T0 = 1000.0  # LSL seconds of a recording's first volume


@pytest.fixture
def bids_root(small_dataset, tmp_path) -> Path:
    """The small session without its dataset.json: a BIDS dataset only."""
    root = tmp_path / "bids"
    shutil.copytree(small_dataset.root, root, ignore=shutil.ignore_patterns("groundtruth"))
    (root / "dataset.json").unlink()
    return root


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    return load_render_model(tiny_model_dir, with_text=True)


def _assert_same_heads(a: DecoderBundle, b: DecoderBundle) -> None:
    assert set(a.heads) == set(b.heads) == {"z", "c"}
    for name in a.heads:
        np.testing.assert_array_equal(a.heads[name].voxels, b.heads[name].voxels)
        np.testing.assert_array_equal(a.heads[name].weights, b.heads[name].weights)
        np.testing.assert_array_equal(a.heads[name].intercept, b.heads[name].intercept)


def _events(path: Path) -> tuple[list[dict], list[str]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        return list(reader), list(reader.fieldnames or [])


def _write_events(path: Path, rows: list[dict], columns: list[str]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, columns, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows({c: r[c] for c in columns} for r in rows)


def _drop_column(path: Path, column: str) -> None:
    rows, columns = _events(path)
    _write_events(path, rows, [c for c in columns if c != column])


def _func(root: Path, run: int, suffix: str) -> Path:
    return root / "sub-01" / "func" / f"sub-01_task-vision_run-{run:02d}_{suffix}"


# ------------------------------------------------------------------------------- BIDS


def test_a_bids_fit_without_the_manifest_gives_the_manifest_fits_weights(
    bids_root, small_bundle_path, tiny_model
):
    inputs = bids_inputs(bids_root, ["1", "run-2"], ["3"])
    assert inputs.masks["ev"] == bids_root / "sub-01/masks/sub-01_desc-ev_mask.nii.gz"
    assert [r.name for r in inputs.validation] == [str(_func(bids_root, 3, "bold.nii.gz"))]
    fitted = fit_from_inputs(inputs, tiny_model, FIT)
    _assert_same_heads(fitted.bundle, DecoderBundle.load(small_bundle_path))
    assert fitted.bundle.report["inputs"]["train"] == [
        str(_func(bids_root, r, "bold.nii.gz")) for r in (1, 2)
    ]


def test_without_a_stimulus_id_column_ids_are_numbered_by_stim_file_and_fit_the_same(
    bids_root, small_bundle_path, tiny_model
):
    for run in (1, 2, 3):
        _drop_column(_func(bids_root, run, "events.tsv"), "stimulus_id")
    inputs = bids_inputs(bids_root, ["1", "2"])
    shown = [_events(_func(bids_root, run, "events.tsv"))[0] for run in (1, 2)]
    files = sorted({row["stim_file"] for rows in shown for row in rows})
    assert sorted(inputs.stimuli) == list(range(len(files)))
    assert [inputs.stimuli[i].picture.name for i in range(len(files))] == files
    fitted = fit_from_inputs(inputs, tiny_model, FIT)
    _assert_same_heads(fitted.bundle, DecoderBundle.load(small_bundle_path))


def test_a_missing_picture_is_named_with_the_events_file(bids_root):
    rows, _ = _events(_func(bids_root, 2, "events.tsv"))
    picture = bids_root / "stimuli" / rows[3]["stim_file"]
    picture.unlink()
    with pytest.raises(DataError) as err:
        bids_inputs(bids_root, ["1", "2"]).check()
    assert str(err.value) == (
        f"{_func(bids_root, 2, 'events.tsv')}: the picture of stimulus {rows[3]['stimulus_id']}, "
        f"{picture}, is missing"
    )


def test_events_beyond_the_end_of_their_run_are_refused_naming_the_file(bids_root):
    events = _func(bids_root, 1, "events.tsv")
    rows, columns = _events(events)
    n_trs = nib.load(_func(bids_root, 1, "bold.nii.gz")).shape[3]  # TR 1 s
    rows[-1]["onset"] = f"{n_trs - 1.0:.3f}"  # 2 s on screen: ends a second after the run
    _write_events(events, rows, columns)
    with pytest.raises(DataError) as err:
        bids_inputs(bids_root, ["1", "2"]).check()
    assert str(err.value).startswith(
        f"{events}: event {len(rows)} (onset {n_trs - 1} s, duration 2 s) ends at {n_trs + 1} s, "
        f"after the end of its run {_func(bids_root, 1, 'bold.nii.gz')} ({n_trs} volumes x TR "
        f"1 s = {n_trs} s)"
    )


def test_runs_on_different_grids_are_refused_naming_both_files_and_shapes(bids_root):
    bold = _func(bids_root, 2, "bold.nii.gz")
    image = nib.load(bold)
    cropped = nib.Nifti1Image(np.asanyarray(image.dataobj)[:, :, :10], image.affine, image.header)
    nib.save(cropped, bold)
    first = _func(bids_root, 1, "bold.nii.gz")
    shape = image.shape[:3]
    with pytest.raises(DataError) as err:
        bids_inputs(bids_root, ["1", "2"]).check()
    assert str(err.value).startswith(
        f"runs on different grids: {first} has shape {shape}, {bold} has {(shape[0], shape[1], 10)}"
    )


def test_one_training_run_is_refused_before_anything_is_read(bids_root):
    with pytest.raises(DataError) as err:
        bids_inputs(bids_root, ["1"])
    assert str(err.value) == (
        f"BIDS dataset {bids_root} (sub-01, task vision): fitting needs at least 2 training "
        "runs (--train-runs), found 1: the ridge penalties are chosen by leave-one-run-out "
        "cross-validation; choose at least 2 with --train-runs (its runs: run-1, run-2, run-3)"
    )
    with pytest.raises(DataError, match=r"no run matching run-7; its runs: run-1, run-2, run-3"):
        bids_inputs(bids_root, ["1", "7"])


def test_pictures_without_captions_are_refused_saying_where_captions_are_looked_for(bids_root):
    table = bids_root / "stimuli" / "stimuli.tsv"
    for path in (_func(bids_root, 1, "events.tsv"), _func(bids_root, 2, "events.tsv"), table):
        _drop_column(path, "caption")
    inputs = bids_inputs(bids_root, ["1", "2"])
    with pytest.raises(DataError) as err:
        inputs.check()
    sid = int(inputs.stimulus_ids()[0])
    assert str(err.value) == (
        f"BIDS dataset {bids_root} (sub-01, task vision): no caption for "
        f"{len(inputs.stimulus_ids())} stimuli, e.g. id {sid} ({inputs.stimuli[sid].picture}): "
        "the render model's text encoder needs one per picture; captions are read from the "
        f"caption column of the events files, else {table} (columns stim_file or file, and "
        "caption)"
    )


def test_a_head_without_a_mask_gets_voxels_chosen_inside_the_mean_epis_brain_mask(
    bids_root, tiny_model, tmp_path
):
    """No ``ev`` and no ``brain`` mask: the z head's voxels are chosen by cross-validated
    encoding inside a brain mask computed from the mean EPI; the c head keeps its ``hv``
    mask; both masks and the figure are written beside the bundle and named in its report."""
    for name in ("ev", "brain"):
        (bids_root / "sub-01" / "masks" / f"sub-01_desc-{name}_mask.nii.gz").unlink()
    inputs = bids_inputs(bids_root, ["1", "2"])
    plan = mask_voxels(inputs, DEFAULT_HEAD_MASKS, DecoderRecipe())
    assert plan.heads["z"] is None and plan.brain_source == "mean EPI"
    shape, affine = inputs.grid
    hv = load_mask(bids_root / "sub-01" / "masks" / "sub-01_desc-hv_mask.nii.gz", shape, affine)
    np.testing.assert_array_equal(plan.heads["c"], hv)
    assert np.isin(hv, plan.brain).mean() > 0.9  # the brain mask holds the ROI

    fitted = fit_from_inputs(inputs, tiny_model, FIT, recipe=DecoderRecipe())
    bundle = fitted.bundle
    assert bundle.report["voxels"]["heads"]["z"]["method"] == "auto"
    assert bundle.report["voxels"]["heads"]["c"] == {"method": "given", "n_voxels": len(hv)}
    assert bundle.report["inputs"]["brain_mask"] == "mean EPI"
    assert np.isin(bundle.heads["z"].voxels, plan.brain).all()
    _, report_path, written = fitted.save(tmp_path / "auto.safetensors")
    report = json.loads(report_path.read_text())
    assert set(written) == {"ev", "hv", "brain"}
    ev = load_mask(written["ev"], shape, affine)  # the chosen voxels, as a mask on the EPI grid
    np.testing.assert_array_equal(ev, bundle.heads["z"].voxels)
    figure = tmp_path / report["mask_figure"]
    assert figure.name == "auto.masks.png" and figure.stat().st_size > 1000


# ------------------------------------------------------------------- recordings, series


def _record(path: Path, run: RecordedRun, label: str, split: int | None = None) -> None:
    """``run`` as the recorder writes it: a volume per TR from ``T0``, a marker per event at
    its onset; ``split``: the volumes from that TR on in segment 2 (a recorder restart)."""
    meta = VolumeStreamMeta(shape=run.shape, affine=run.affine, tr_s=run.tr_s, run=label)
    shapes = RecordingShapes(run.volumes.shape[1], (1,), (1,), (4, 4, 3))
    bounds = [0, split or len(run.volumes), len(run.volumes)]
    for number, (start, stop) in enumerate(itertools.pairwise(bounds), start=1):
        if start == stop:
            continue
        attrs = {"stream": stream_attrs(meta)}
        with RecordingWriter(segment_path(path, number), shapes, attrs=attrs) as rec:
            for t in range(start, stop):
                rec.add_volume(run.volumes[t], T0 + t * run.tr_s)
            for trial, event in enumerate(run.events):
                if start * run.tr_s <= event["onset"] < stop * run.tr_s:
                    marker = {"type": "event", "run": label, "trial": trial, **event}
                    rec.add_marker(marker, T0 + event["onset"])


def test_a_fit_from_two_recordings_one_in_two_segments_gives_the_manifest_fits_weights(
    small_dataset, small_bundle_path, tiny_model, tmp_path
):
    recordings = []
    for files, split in zip(small_dataset.runs("train"), (None, 17), strict=True):
        path = tmp_path / f"visit-{files.run}.h5"
        _record(path, load_nifti_run(files.bold, files.events), files.run, split)
        recordings.append(path)
    inputs = recording_inputs(recordings, small_dataset.root / "stimuli")
    assert inputs.train[1].run.times is not None  # joined across the segments
    assert inputs.masks == {}  # a recording has none: given as --mask
    inputs = inputs.with_masks({name: small_dataset.mask_path(name) for name in ("ev", "hv")})
    fitted = fit_from_inputs(inputs, tiny_model, FIT)
    _assert_same_heads(fitted.bundle, DecoderBundle.load(small_bundle_path))


def test_one_recording_of_two_presented_runs_on_one_grid_fits_as_two_runs(
    small_dataset, small_bundle_path, tiny_model, tmp_path
):
    """A visit's recorder records every training run in one segment (the series share a
    grid); the presenter's run_start markers cut it into the runs the fit needs."""
    runs = [load_nifti_run(f.bold, f.events) for f in small_dataset.runs("train")]
    first = runs[0]
    meta = VolumeStreamMeta(shape=first.shape, affine=first.affine, tr_s=first.tr_s, run="7")
    shapes = RecordingShapes(first.volumes.shape[1], (1,), (1,), (4, 4, 3))
    path = tmp_path / "visit.h5"
    with RecordingWriter(path, shapes, attrs={"stream": stream_attrs(meta)}) as rec:
        t0 = T0
        for number, run in enumerate(runs, start=1):
            label = f"{number:02d}"
            rec.add_marker({"type": "run_start", "run": label}, t0)
            for t, volume in enumerate(run.volumes):
                rec.add_volume(volume, t0 + t * run.tr_s)
            for trial, event in enumerate(run.events):
                marker = {"type": "event", "run": label, "trial": trial, **event}
                rec.add_marker(marker, t0 + event["onset"])
            rec.add_marker({"type": "run_end", "run": label}, t0 + len(run.volumes) * run.tr_s)
            t0 += len(run.volumes) * run.tr_s + 30.0  # the break between two series
    inputs = recording_inputs([path], small_dataset.root / "stimuli")
    assert [r.name for r in inputs.train] == [f"{path} (run 01)", f"{path} (run 02)"]
    for got, run in zip(inputs.train, runs, strict=True):
        np.testing.assert_array_equal(got.run.volumes, run.volumes)
    inputs = inputs.with_masks({name: small_dataset.mask_path(name) for name in ("ev", "hv")})
    fitted = fit_from_inputs(inputs, tiny_model, FIT)
    _assert_same_heads(fitted.bundle, DecoderBundle.load(small_bundle_path))


def test_a_trial_after_a_gap_in_the_volumes_stays_on_its_volume():
    volumes = np.zeros((6, 2), np.float32)
    times = np.array([0.0, 1.0, 2.0, 5.0, 6.0, 7.0])  # three volumes lost at 3..4 s
    events = [
        {"onset": 5.0, "duration": 1.0, "stimulus_id": 4},
        {"onset": 1.0, "duration": 0.0, "trial_type": "note"},
    ]
    run = RecordedRun(volumes, (2, 1, 1), np.eye(4), 1.0, events=events, times=times)
    training = FitRun("r.h5", run).training_run()
    assert training.events[0]["onset"] == 3.0  # row 3, the volume acquired at 5 s
    assert training.events[1] == run.events[1]  # not a trial: as it was


def test_series_need_one_events_file_each_and_take_the_pictures_from_the_stimulus_folder(
    small_dataset, tmp_path
):
    runs = small_dataset.runs("train")
    with pytest.raises(DataError, match="2 series and 1 events files: give one --events TSV"):
        series_inputs([r.bold for r in runs], [runs[0].events], small_dataset.root / "stimuli")
    inputs = series_inputs(
        [r.bold for r in runs], [r.events for r in runs], small_dataset.root / "stimuli"
    )
    inputs.check()
    assert [r.events_file for r in inputs.train] == [r.events for r in runs]
    assert set(inputs.stimulus_ids()) <= set(inputs.stimuli)
    no_trials = tmp_path / "no-trials_events.tsv"
    no_trials.write_text("onset\tduration\ttrial_type\n4.0\t2.0\tfixation\n")
    stimuli = small_dataset.root / "stimuli"
    with pytest.raises(DataError) as err:
        series_inputs([r.bold for r in runs], [runs[0].events, no_trials], stimuli).check()
    assert str(err.value) == (
        f"{no_trials}: no trials in training run {runs[1].bold} (expected events with a "
        "stimulus_id: docs/protocol.md section 2)"
    )


def test_one_source_at_a_time_and_stimuli_with_a_visits_files(small_dataset, tmp_path):
    with pytest.raises(DataError, match=r"fit from one source: .* found a dataset folder and "):
        open_fit_inputs(small_dataset.root, recordings=[tmp_path / "a.h5"])
    with pytest.raises(DataError, match="--stimuli DIR is needed with --recordings or --series"):
        open_fit_inputs(recordings=[tmp_path / "a.h5"])
    with pytest.raises(DataError, match=rf"{tmp_path} is neither an rt_recon dataset"):
        open_fit_inputs(tmp_path)


# ------------------------------------------------------------------------------- CLI


def _model(model_dir: Path, tmp_path: Path) -> list[str]:
    """``--model`` and a ``--config`` whose fit section is :data:`FIT`, as the manifest
    bundle's (the default config's recipe denoises, selects voxels, ...)."""
    config = tmp_path / "fit.json"
    config.write_text(json.dumps({"fit": FIT.model_dump(mode="json")}))
    return ["--model", str(model_dir), "--config", str(config)]


def test_the_cli_fits_a_bids_dataset_with_a_mask_from_another_grid(
    bids_root, tiny_model_dir, small_bundle_path, tmp_path, capsys
):
    """``--mask ev=FILE`` on a 2x finer grid: resampled, used, written beside the bundle."""
    ev = nib.load(bids_root / "sub-01/masks/sub-01_desc-ev_mask.nii.gz")
    fine = np.repeat(np.repeat(np.repeat(np.asanyarray(ev.dataobj), 2, 0), 2, 1), 2, 2)
    affine = ev.affine.copy()
    affine[:3, :3] /= 2
    affine[:3, 3] -= 0.25 * np.diag(ev.affine)[:3]  # the same field of view, half the voxel
    nib.save(nib.Nifti1Image(fine, affine), tmp_path / "ev-fine.nii.gz")
    out = tmp_path / "out" / "sub-01.safetensors"
    mask = f"ev={tmp_path / 'ev-fine.nii.gz'}"
    runs = ["--train-runs", "1", "2", "--validation-runs", "3"]
    code = main(["fit", str(bids_root), *runs, "--mask", mask, *_model(tiny_model_dir, tmp_path),
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "sub-01.report.json").read_text())
    assert report["masks"] == {"ev": "sub-01.mask-ev.nii.gz", "hv": "sub-01.mask-hv.nii.gz"}
    assert report["inputs"]["validation"] == [str(_func(bids_root, 3, "bold.nii.gz"))]
    assert f"mask ev: {tmp_path / 'out' / 'sub-01.mask-ev.nii.gz'}" in printed
    shape, grid = ev.shape, ev.affine
    written = load_mask(tmp_path / "out" / "sub-01.mask-ev.nii.gz", shape, grid)
    np.testing.assert_array_equal(written, load_mask(tmp_path / "ev-fine.nii.gz", shape, grid))
    # each EPI voxel's centre lies inside the 2x2x2 fine voxels it was made of: the same mask
    np.testing.assert_array_equal(written, load_mask(ev.get_filename(), shape, grid))
    _assert_same_heads(DecoderBundle.load(out), DecoderBundle.load(small_bundle_path))


def test_the_cli_fits_recordings_and_names_a_bad_source_with_exit_code_2(
    small_dataset, tiny_model_dir, tmp_path, capsys
):
    recordings = []
    for files in small_dataset.runs("train"):
        path = tmp_path / f"visit-{files.run}.h5"
        _record(path, load_nifti_run(files.bold, files.events), files.run)
        recordings.append(str(path))
    masks = [f"--mask={n}={small_dataset.mask_path(n)}" for n in ("ev", "hv")]
    out = tmp_path / "b.safetensors"
    stimuli = ["--stimuli", str(small_dataset.root / "stimuli")]
    model = _model(tiny_model_dir, tmp_path)
    code = main(["fit", "--recordings", *recordings, *stimuli, *masks, *model, "--out", str(out)])
    assert code == 0
    assert f"from recordings {', '.join(recordings)}: 2 training runs" in capsys.readouterr().out
    assert DecoderBundle.load(out).report["inputs"]["train"] == recordings
    code = main(["fit", "--recordings", recordings[0], *stimuli, "--out", str(tmp_path / "c.h5")])
    assert code == 2
    assert "fitting needs at least 2 training runs (runs in the recordings), found 1" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "c.h5").exists()
