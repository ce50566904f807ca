"""Fit a decoder bundle on training runs for one render model.

:func:`fit_from_inputs` fits from a :class:`~rt_recon.apps.fit_inputs.FitInputs` (runs, stimuli
and masks, from any source: a manifest dataset, BIDS, recordings, scanner series);
:func:`fit_dataset` is that for a manifest dataset. :meth:`FittedBundle.save` writes the
bundle, the masks it used (``<stem>.mask-<name>.nii.gz``) and its report.

Targets come from the render model itself (``z``: VAE latents of the
pictures; ``c``: text-encoder states of the captions), so a bundle belongs
to one model, whose fingerprint it records.

A fit needs at least :data:`~rt_recon.decode.fit.MIN_RUNS` (two) training
runs (role ``train`` in the dataset's manifest): the ridge penalty of every
target is chosen by leave-one-run-out cross-validation.
:func:`training_runs` checks that first, before a model is loaded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from rt_recon.acquire.masks import load_mask
from rt_recon.apps.fit_inputs import FitInputs, check_run_count
from rt_recon.config import FitSection
from rt_recon.dataset import MANIFEST, Dataset, RunFiles
from rt_recon.decode import auto_roi
from rt_recon.decode.bundle import DecoderBundle, ModelSpec, StreamSpec
from rt_recon.decode.caption_bank import BANK_FILE, CaptionBank, read_bank_file
from rt_recon.decode.fit import Targets, fit_decoders
from rt_recon.decode.recipe import DecoderRecipe
from rt_recon.errors import DataError
from rt_recon.evaluate.mask_figure import channels_to_mask, draw_bundle_masks
from rt_recon.render.model import RenderModel
from rt_recon.render.targets import encode_captions, encode_images

log = logging.getLogger(__name__)

#: Which mask each head reads (Takagi & Nishimoto: z from early, c from higher visual cortex).
DEFAULT_HEAD_MASKS = {"z": "ev", "c": "hv"}


def training_runs(dataset: Dataset) -> list[RunFiles]:
    """The dataset's ``train`` runs; a DataError naming the dataset if there are too few."""
    runs = [r for r in dataset.runs() if r.role == "train"]
    check_run_count(f"{dataset.root}", len(runs), f"role 'train' in {MANIFEST}", _ADD_RUN)
    return runs


_ADD_RUN = "add another training run"


@dataclass
class FittedBundle:
    """A fitted bundle and the masks it was fitted with.

    Attributes:
        bundle: the decoders; its ``report`` says where the runs came from.
        masks: ``{name: (n,) channel indices}`` of each mask used, on the runs' grid.
        shape, affine: that grid (``(x, y, z)``, RAS+ mm).
        mean_epi: ``(x, y, z)`` mean of the training runs, drawn under the masks.
    """

    bundle: DecoderBundle
    masks: dict[str, np.ndarray]
    shape: tuple[int, int, int]
    affine: np.ndarray
    mean_epi: np.ndarray | None = None

    def save(self, out: str | Path) -> tuple[Path, Path, dict[str, Path]]:
        """Write the bundle to ``out``, each mask beside it as ``<stem>.mask-<name>.nii.gz``
        (on the EPI grid), the masks drawn over the mean EPI as ``<stem>.masks.png``, and
        the fit report as ``<stem>.report.json`` (its ``masks`` and ``mask_figure`` entries
        name those files). Returns (bundle, report, ``{name: mask file}``)."""
        out = Path(out)
        stem = out.stem
        out.parent.mkdir(parents=True, exist_ok=True)
        written = {}
        for name, voxels in self.masks.items():
            path = out.with_name(f"{stem}.mask-{name}.nii.gz")
            volume = channels_to_mask(voxels, self.shape).astype(np.uint8)
            nib.save(nib.Nifti1Image(volume, np.asarray(self.affine, float)), path)
            written[name] = path
        self.bundle.report["masks"] = {name: path.name for name, path in written.items()}
        if self.mean_epi is not None:
            figure = draw_bundle_masks(
                self.bundle, self.mean_epi, out.with_name(f"{stem}.masks.png")
            )
            self.bundle.report["mask_figure"] = figure.name
        path = self.bundle.save(out)
        report = path.with_name(stem + ".report.json")
        report.write_text(json.dumps(self.bundle.report, indent=2))
        return path, report, written


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
    inputs = FitInputs.from_dataset(dataset)  # too few training runs: training_runs' error
    return fit_from_inputs(inputs, model, fit, head_masks, progress, recipe).bundle


def fit_from_inputs(
    inputs: FitInputs,
    model: RenderModel,
    fit: FitSection,
    head_masks: Mapping[str, str] = DEFAULT_HEAD_MASKS,
    progress: Callable[[int, int], None] | None = None,
    recipe: DecoderRecipe | None = None,
    caption_bank: str | Path | None = None,
) -> FittedBundle:
    """Fit one head per entry of ``head_masks`` (head -> mask name) on ``inputs``' training
    runs as ``recipe`` says (default: the config's ``fit.recipe``).

    A recipe that snaps ``c`` reads its captions from ``caption_bank`` (default: the render
    model's ``caption_bank.txt``) and encodes them with the model (:func:`encode_bank`).

    ``inputs`` is checked first (:meth:`~rt_recon.apps.fit_inputs.FitInputs.check`). A recipe
    that denoises draws its noise pool from the ``brain`` mask outside the heads' masks.
    ``progress(done, total)``: see :func:`~rt_recon.decode.fit.fit_decoders`.
    """
    recipe = DecoderRecipe(**fit.recipe.model_dump()) if recipe is None else recipe
    inputs.check()
    bank = encode_bank(model, caption_bank) if recipe.snap_c else None
    runs = [r.training_run() for r in inputs.train]
    shape, affine = inputs.grid
    log.info("%s: %d training runs of %s voxels", inputs.origin, len(runs), shape)
    mean = auto_roi.mean_epi([r.run.volumes for r in inputs.train], shape)
    plan = mask_voxels(inputs, head_masks, recipe, mean)
    ids = inputs.stimulus_ids()
    log.info("encoding %d pictures and captions with the render model", len(ids))
    images, captions = inputs.images(ids), inputs.captions(ids)
    values = {"z": encode_images(model, images), "c": encode_captions(model, captions)}
    shapes = {"z": model.latent_shape, "c": model.cond_shape}
    n_channels = int(np.prod(shape))
    bundle = fit_decoders(
        runs,
        plan.heads,
        Targets(ids=ids, values=values),
        {head: shapes[head] for head in head_masks},
        fit,
        stream=StreamSpec(shape, n_channels, "full", np.asarray(affine)),
        model=ModelSpec.from_json(model.describe()),
        progress=progress,
        recipe=recipe,
        noise_candidates=plan.brain if recipe.denoise_pcs else None,
        brain=plan.brain,
        caption_bank=bank,
    )
    bundle.report["inputs"] = {
        "origin": inputs.origin,
        "train": [r.name for r in inputs.train],
        "validation": [r.name for r in inputs.validation],
        "head_masks": dict(head_masks),
        "brain_mask": plan.brain_source,
    }
    masks = dict(plan.used)
    for head, name in head_masks.items():
        if plan.heads[head] is None:  # chosen by the fit: written under the mask's name
            masks[name] = bundle.heads[head].voxels
    return FittedBundle(bundle, masks, tuple(shape), np.asarray(affine), mean)


def encode_bank(model: RenderModel, path: str | Path | None = None) -> CaptionBank:
    """The caption bank a recipe that snaps ``c`` uses: ``path`` (default: the render
    model's :data:`~rt_recon.decode.caption_bank.BANK_FILE`), one caption a line, encoded
    by the model's text encoder."""
    path = Path(model.path) / BANK_FILE if path is None else Path(path)
    if not path.is_file():
        raise DataError(
            f"the recipe snaps c to a caption bank (fit.recipe.snap_c) but {path} does not "
            f"exist: give --caption-bank FILE (one caption a line), put {BANK_FILE} in the "
            "render model's folder, or fit without snapping (fit.recipe.snap_c: false in "
            "--config; the shipped default config snaps)"
        )
    captions = read_bank_file(path)
    log.info("encoding the caption bank: %d captions from %s", len(captions), path)
    return CaptionBank.build(encode_captions(model, captions), source=str(path))


#: The mask a denoising recipe draws its noise pool from, and automatic heads choose from.
NOISE_MASK = "brain"


@dataclass
class MaskPlan:
    """What each head reads, decided before the fit (:func:`mask_voxels`).

    Attributes:
        heads: per head, its mask's channels, or None: chosen by the fit from ``brain``
            (:func:`~rt_recon.decode.fit.choose_voxels`).
        used: ``{mask name: channels}`` of every mask read (written beside the bundle).
        brain: the brain mask's channels (the user's, or the mean EPI's where no user mask
            gave it and a head or the recipe needs one); None where nothing needs it.
        brain_source: ``"given"``, ``"mean EPI"`` or None.
    """

    heads: dict[str, np.ndarray | None]
    used: dict[str, np.ndarray]
    brain: np.ndarray | None
    brain_source: str | None


def mask_voxels(
    inputs: FitInputs,
    head_masks: Mapping[str, str],
    recipe: DecoderRecipe,
    mean: np.ndarray | None = None,
) -> MaskPlan:
    """Each head's mask on the runs' grid, or None where the user gave none; the brain mask.

    The one place that decides what a head without a mask gets: its voxels are chosen
    by cross-validated encoding inside the brain mask (the user's ``brain`` mask, else
    one computed from ``mean``, the training runs' mean EPI ``(x, y, z)``, by nilearn's
    ``compute_epi_mask``). A denoising recipe draws its noise pool from the same brain mask.
    """
    shape, affine = inputs.grid
    used: dict[str, np.ndarray] = {}
    heads: dict[str, np.ndarray | None] = {}
    for head, name in head_masks.items():
        if name in inputs.masks:
            if name not in used:
                used[name] = load_mask(inputs.masks[name], shape, affine)
            heads[head] = used[name]
        else:
            heads[head] = None
            log.info(
                "%s: no %r mask for head %s: its voxels are chosen by cross-validated "
                "encoding inside the brain mask",
                inputs.origin, name, head,
            )  # fmt: skip
    brain, source = None, None
    if recipe.denoise_pcs or any(v is None for v in heads.values()):
        if NOISE_MASK in inputs.masks:
            brain, source = load_mask(inputs.masks[NOISE_MASK], shape, affine), "given"
        else:
            if mean is None:
                mean = auto_roi.mean_epi([r.run.volumes for r in inputs.train], shape)
            brain, source = auto_roi.epi_brain_mask(mean, affine), "mean EPI"
        used[NOISE_MASK] = brain
    return MaskPlan(heads, used, brain, source)
