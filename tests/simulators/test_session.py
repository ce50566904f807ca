import json

import nibabel as nib
import numpy as np

from rt_recon.acquire.events import read_events
from rt_recon.acquire.nifti import load_mask, load_nifti_run
from rt_recon.simulators.brain import SyntheticBrain
from rt_recon.simulators.session import run_schedule
from rt_recon.simulators.world import StimulusWorld
from tests.conftest import SMALL_SIM


def test_layout_is_bids_like_with_ground_truth(small_dataset):
    root = small_dataset.root
    train, test = small_dataset.runs("train"), small_dataset.runs("test")
    assert len(train) == SMALL_SIM.n_train_runs and len(test) == 1
    for files in train + test:
        assert files.bold.name.endswith("_bold.nii.gz") and files.bold.is_file()
        assert files.events.name.endswith("_events.tsv")
        sidecar = json.loads(
            files.bold.with_name(files.bold.name.replace(".nii.gz", ".json")).read_text()
        )
        assert sidecar["RepetitionTime"] == SMALL_SIM.tr_s
    assert (root / "dataset_description.json").is_file()
    assert (root / "groundtruth" / "brain.safetensors").is_file()
    for name in ("brain", "ev", "hv"):
        assert small_dataset.mask_path(name).is_file()


def test_runs_have_the_scheduled_length_tr_and_held_out_pictures(small_dataset):
    _, _, n_trs = run_schedule(SMALL_SIM, SMALL_SIM.trials_per_run)
    ids = {}
    for files in small_dataset.runs():
        run = load_nifti_run(files.bold, files.events)
        assert run.volumes.shape == (n_trs, int(np.prod(SMALL_SIM.grid)))
        assert run.tr_s == SMALL_SIM.tr_s and run.shape == SMALL_SIM.grid
        assert len(run.events) == SMALL_SIM.trials_per_run
        ids[files.role] = ids.get(files.role, set()) | {e["stimulus_id"] for e in run.events}
    assert not ids["train"] & ids["test"]  # test pictures never seen in training
    # ... nor by any model of the project: the world's held-out pictures only
    world = StimulusWorld(SMALL_SIM.seed, SMALL_SIM.image_size, SMALL_SIM.world_version)
    held_out = set(world.holdout_ids().tolist())
    assert ids["test"] <= held_out and not ids["train"] & held_out
    images = small_dataset.stimulus_images(sorted(ids["test"])[:3])
    assert images.shape == (3, SMALL_SIM.image_size, SMALL_SIM.image_size, 3)


def test_roi_voxels_respond_to_stimuli_more_than_others(small_dataset):
    files = small_dataset.runs("train")[0]
    run = load_nifti_run(files.bold, files.events)
    ev = load_mask(small_dataset.mask_path("ev"), run.shape)
    brain = load_mask(small_dataset.mask_path("brain"), run.shape)
    other = np.setdiff1d(brain, np.concatenate([ev, load_mask(small_dataset.mask_path("hv"))]))

    def psc_std(index):
        v = run.volumes[:, index]
        return float(np.median(v.std(0) / v.mean(0)))

    assert psc_std(ev) > 1.2 * psc_std(other)
    assert len(read_events(files.events)) == SMALL_SIM.trials_per_run


def test_early_visual_prfs_are_retinotopic():
    brain = SyntheticBrain(StimulusWorld(), grid=(24, 28, 16), seed=0)
    x = np.unravel_index(brain.ev_index, brain.grid, order="F")[0]
    left_hemisphere = x < brain.grid[0] / 2
    # left hemisphere sees the right half of the picture, and vice versa
    assert np.median(brain.prf_centres[left_hemisphere, 0]) > 0.6
    assert np.median(brain.prf_centres[~left_hemisphere, 0]) < 0.4
    eccentricity = np.linalg.norm(brain.prf_centres - 0.5, axis=1)
    assert np.corrcoef(eccentricity, brain.prf_sizes)[0, 1] > 0.5


def test_masks_are_saved_in_the_volume_space(small_dataset):
    mask = nib.load(small_dataset.mask_path("ev"))
    bold = nib.load(small_dataset.runs("test")[0].bold)
    assert mask.shape == bold.shape[:3]
    np.testing.assert_allclose(mask.affine, bold.affine)


def test_a_world_2_session_shows_its_worlds_pictures_and_has_its_own_key(tmp_path):
    from rt_recon.simulators.session import generate_session, session_key

    sim = SMALL_SIM.model_copy(
        update={"world_version": 2, "grid": (12, 14, 10), "n_train_runs": 1, "trials_per_run": 4}
    )
    dataset = generate_session(sim, tmp_path / "ds")
    assert dataset.manifest["simulation"]["world_version"] == 2
    assert "world_version" not in json.dumps(
        generate_session(SMALL_SIM.model_copy(update={"n_train_runs": 1}), tmp_path / "v1")
        .manifest["simulation"]
    )  # fmt: skip
    assert session_key(sim, "01") != session_key(SMALL_SIM.model_copy(update=dict(
        grid=(12, 14, 10), n_train_runs=1, trials_per_run=4)), "01")  # fmt: skip
    world = StimulusWorld(seed=sim.seed, image_size=sim.image_size, version=2)
    test_ids = {e["stimulus_id"] for e in read_events(dataset.runs("test")[0].events)}
    assert test_ids <= set(world.holdout_ids().tolist())
    captions = dict(dataset.stimuli())
    assert all(captions[i][0] == world.caption(i) for i in test_ids)
