"""Fit a decoder bundle on a dataset's training runs for one render model.

Targets come from the render model itself (``z``: VAE latents of the
pictures; ``c``: text-encoder states of the captions), so a bundle belongs
to one model, whose fingerprint it records.

A fit needs at least :data:`~rt_recon.decode.fit.MIN_RUNS` (two) training
runs (role ``train`` in the dataset's manifest): the ridge penalty of every
target is chosen by leave-one-run-out cross-validation.
:func:`training_runs` checks that first, before a model is loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import numpy as np

from rt_recon.acquire.masks import load_mask
from rt_recon.acquire.nifti import load_nifti_run
from rt_recon.config import FitSection
from rt_recon.dataset import MANIFEST, Dataset, RunFiles
from rt_recon.decode.bundle import DecoderBundle, ModelSpec, StreamSpec
from rt_recon.decode.fit import MIN_RUNS, Targets, TrainingRun, fit_decoders
from rt_recon.decode.recipe import DecoderRecipe
from rt_recon.errors import DataError
from rt_recon.render.model import RenderModel
from rt_recon.render.targets import encode_captions, encode_images

log = logging.getLogger(__name__)

#: Which mask each head reads (Takagi & Nishimoto: z from early, c from higher visual cortex).
DEFAULT_HEAD_MASKS = {"z": "ev", "c": "hv"}


def training_runs(dataset: Dataset) -> list[RunFiles]:
    """The dataset's ``train`` runs; a DataError naming the dataset if there are too few."""
    runs = dataset.runs("train")
    if len(runs) < MIN_RUNS:
        raise DataError(
            f"{dataset.root}: fitting needs at least {MIN_RUNS} training runs (role 'train' in "
            f"{MANIFEST}), found {len(runs)}: the ridge penalties are chosen by "
            "leave-one-run-out cross-validation; add another training run"
        )
    return runs


def fit_dataset(
    dataset: Dataset,
    model: RenderModel,
    fit: FitSection,
    head_masks: Mapping[str, str] = DEFAULT_HEAD_MASKS,
    progress: Callable[[int, int], None] | None = None,
    recipe: DecoderRecipe | None = None,
) -> DecoderBundle:
    """Fit one head per mask on the dataset's ``train`` runs as ``recipe`` says (default:
    the config's ``fit.recipe``); return the bundle.

    A recipe that denoises draws its noise pool from the dataset's ``brain`` mask outside
    the heads' masks. ``progress(done, total)``: see :func:`~rt_recon.decode.fit.fit_decoders`.
    """
    recipe = DecoderRecipe(**fit.recipe.model_dump()) if recipe is None else recipe
    runs, shape, affine = [], None, None
    for files in training_runs(dataset):
        recorded = load_nifti_run(files.bold, files.events)
        shape, affine = recorded.shape, recorded.affine
        runs.append(TrainingRun(recorded.volumes, recorded.events, recorded.tr_s))
    log.info("loaded %d training runs of %s voxels", len(runs), shape)
    head_voxels = {
        head: load_mask(dataset.mask_path(mask), shape, affine) for head, mask in head_masks.items()
    }
    noise_candidates = None
    if recipe.denoise_pcs:
        if "brain" not in dataset.manifest.get("masks", {}):
            raise DataError(
                f"{dataset.root}: recipe {recipe.name!r} draws its noise pool from a 'brain' "
                f"mask, the dataset has masks {sorted(dataset.manifest.get('masks', {}))}"
            )
        noise_candidates = load_mask(dataset.mask_path("brain"), shape, affine)
    ids = sorted({int(e["stimulus_id"]) for r in runs for e in r.events if "stimulus_id" in e})
    ids = np.array(ids)
    log.info("encoding %d pictures and captions with the render model", len(ids))
    values = {
        "z": encode_images(model, dataset.stimulus_images(ids)),
        "c": encode_captions(model, dataset.captions(ids)),
    }
    shapes = {"z": model.latent_shape, "c": model.cond_shape}
    n_channels = int(np.prod(shape))
    return fit_decoders(
        runs,
        head_voxels,
        Targets(ids=ids, values=values),
        {head: shapes[head] for head in head_masks},
        fit,
        stream=StreamSpec(shape, n_channels, "full", np.asarray(affine)),
        model=ModelSpec.from_json(model.describe()),
        progress=progress,
        recipe=recipe,
        noise_candidates=noise_candidates,
    )
