"""``rt-recon fit``'s dataset fit takes a recipe from the config's ``fit.recipe``: the noise
pool comes from the dataset's brain mask outside the ROI masks, and the bundle decodes as the
recipe says."""

import numpy as np
import pytest

from rt_recon.acquire.masks import load_mask
from rt_recon.acquire.nifti import load_nifti_run
from rt_recon.apps.fit import fit_dataset
from rt_recon.config import FitSection, SessionConfig
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.decode.online import OnlineDecoder
from rt_recon.decode.recipe import DecoderRecipe
from rt_recon.render.model import load_render_model


def test_a_recipe_fits_from_a_dataset_with_its_pool_outside_the_rois(
    small_dataset, tiny_model_dir, tmp_path
):
    model = load_render_model(tiny_model_dir, with_text=True)
    config = SessionConfig().with_overrides(
        {
            "fit.alphas": [1.0, 100.0, 1e4],
            "fit.recipe": {
                "hrf": "library", "denoise_pcs": 2, "trial_estimate": "lss", "pool_size": 40
            },
        }
    )  # fmt: skip
    recipe = DecoderRecipe(hrf="library", denoise_pcs=2, trial_estimate="lss", pool_size=40)
    bundle = fit_dataset(small_dataset, model, config.fit)
    loaded = DecoderBundle.load(bundle.save(tmp_path / "b.safetensors"))
    assert loaded.recipe == recipe and loaded.temporal.mode == "lss"
    run = load_nifti_run(*_files(small_dataset))
    brain, ev, hv = (
        load_mask(small_dataset.mask_path(m), run.shape, run.affine) for m in ("brain", "ev", "hv")
    )
    pool = loaded.noise.pool
    assert len(pool) == 40 and np.isin(pool, brain).all()
    assert not np.isin(pool, np.union1d(ev, hv)).any()
    decoder = OnlineDecoder(loaded)
    latents = [decoder.update(v) for v in run.volumes]
    assert all(np.isfinite(x["z"]).all() and np.isfinite(x["c"]).all() for x in latents)


def _files(dataset):
    files = dataset.runs("test")[0]
    return files.bold, files.events


def test_the_default_config_recipe_is_todays_decoder_and_a_bad_one_is_refused():
    assert DecoderRecipe(**FitSection().recipe.model_dump()) == DecoderRecipe()
    assert FitSection(recipe={"select_voxels": "auto"}).recipe.select_voxels == "auto"
    with pytest.raises(ValueError, match="fraction in"):
        FitSection(recipe={"select_voxels": 1.5})
    with pytest.raises(ValueError, match="trial_estimate"):
        FitSection(recipe={"trial_estimate": "glm"})
