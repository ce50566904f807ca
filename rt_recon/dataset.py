"""A dataset on disk: BIDS-like runs, masks and stimuli, listed in a ``dataset.json`` manifest.

Layout (relative paths in the manifest)::

    dataset.json
    stimuli/stimuli.tsv          stimulus_id, caption, file (id -1 is the blank screen)
    stimuli/stim-00042.png ...
    sub-01/func/sub-01_task-vision_run-01_bold.nii.gz, _bold.json, _events.tsv
    sub-01/masks/sub-01_desc-{brain,ev,hv}_mask.nii.gz

A dataset with sessions keeps each session's runs in ``sub-01/ses-NN/func/``
(``sub-01_ses-NN_task-vision_run-NN_bold.nii.gz``).

The manifest lists each run with its role (one of :data:`ROLES`: ``train``,
``validation`` or ``test``), files, TR and length, optionally its session
(``session``: ``"01"``, ``"02"``; absent, the dataset has one), and each mask
by name. ``rt_recon.simulators.session`` writes this format; recorded data
organised the same way fits and replays the same way.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rt_recon.errors import DataError

MANIFEST = "dataset.json"
BLANK_ID = -1
#: Run roles: fitted on, held out to choose settings, held out to report.
ROLES = ("train", "validation", "test")


@dataclass(frozen=True)
class RunFiles:
    """The files of one run."""

    run: str
    role: str  # one of ROLES
    bold: Path
    events: Path
    n_trs: int
    tr_s: float  # ``tr`` in the manifest
    session: str | None = None  # ``session`` in the manifest (e.g. "02"); None: not given


@dataclass(frozen=True)
class Dataset:
    root: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, root: str | Path) -> Dataset:
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise DataError(f"{root} is not an rt_recon dataset: {path} is missing")
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON: {exc}") from None
        for key in ("subject", "runs", "masks"):
            if key not in manifest:
                raise DataError(f"{path}: manifest lacks the {key!r} entry")
        return cls(root=root, manifest=manifest)

    @property
    def subject(self) -> str:
        return str(self.manifest["subject"])

    def runs(self, role: str | None = None) -> list[RunFiles]:
        runs = [
            RunFiles(
                run=r["run"],
                role=r["role"],
                bold=self.root / r["bold"],
                events=self.root / r["events"],
                n_trs=int(r["n_trs"]),
                tr_s=float(r["tr"]),
                session=None if r.get("session") is None else str(r["session"]),
            )
            for r in self.manifest["runs"]
            if role is None or r["role"] == role
        ]
        if not runs:
            raise DataError(f"{self.root}: no runs with role {role!r} in {MANIFEST}")
        return runs

    def mask_path(self, name: str) -> Path:
        masks = self.manifest["masks"]
        if name not in masks:
            raise DataError(f"{self.root}: no mask named {name!r}; it has {sorted(masks)}")
        return self.root / masks[name]

    def stimuli(self) -> dict[int, tuple[str, Path]]:
        """``{stimulus_id: (caption, picture path)}`` from ``stimuli/stimuli.tsv``."""
        table = self.root / "stimuli" / "stimuli.tsv"
        if not table.is_file():
            raise DataError(f"{self.root}: stimulus table {table} is missing")
        with table.open(newline="") as fh:
            return {
                int(row["stimulus_id"]): (row["caption"], self.root / "stimuli" / row["file"])
                for row in csv.DictReader(fh, delimiter="\t")
            }

    def stimulus_images(self, ids: list[int] | np.ndarray) -> np.ndarray:
        """``(n, H, W, 3)`` uint8 pictures of the given stimulus ids."""
        table = self.stimuli()
        missing = [int(i) for i in ids if int(i) not in table]
        if missing:
            raise DataError(f"{self.root}: stimuli {missing[:10]} are not in stimuli.tsv")
        return np.stack([read_picture(table[int(i)][1]) for i in ids])

    def captions(self, ids: list[int] | np.ndarray) -> list[str]:
        table = self.stimuli()
        return [table[int(i)][0] for i in ids]


def read_picture(path: Path) -> np.ndarray:
    """A stimulus picture as ``(H, W, 3)`` uint8; a missing or unreadable file is named."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except OSError as exc:  # PIL's UnidentifiedImageError is an OSError too
        raise DataError(f"stimulus picture {path}: not a readable image ({exc})") from None
