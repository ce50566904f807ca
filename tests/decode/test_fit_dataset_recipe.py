"""``rt-recon fit``'s dataset fit takes a recipe: the noise pool comes from the dataset's
brain mask outside the ROI masks, and the bundle decodes as the recipe says."""

import numpy as np

from rt_recon.acquire.masks import load_mask
from rt_recon.acquire.nifti import load_nifti_run
from rt_recon.apps.fit import fit_dataset
from rt_recon.config import FitSection
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.decode.online import OnlineDecoder
from rt_recon.decode.recipe import DecoderRecipe
from rt_recon.render.model import load_render_model


def test_a_recipe_fits_from_a_dataset_with_its_pool_outside_the_rois(
    small_dataset, tiny_model_dir, tmp_path
):
    model = load_render_model(tiny_model_dir, with_text=True)
    recipe = DecoderRecipe(hrf="library", denoise_pcs=2, trial_estimate="lss", pool_size=40)
    bundle = fit_dataset(small_dataset, model, FitSection(alphas=(1.0, 100.0, 1e4)), recipe=recipe)
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
