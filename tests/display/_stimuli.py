"""A small stimulus set on disk for the presenter's tests: distinct PNG pictures and their TSV."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tests.display._helpers import pattern


def write_stimulus_set(folder: Path, ids: list[int], size: int = 32) -> Path:
    """``folder/stimuli.tsv`` and ``folder/pics/ID.png`` for each id (the picture ``pattern(id)``,
    caption ``picture ID``); the folder."""
    (folder / "pics").mkdir(parents=True, exist_ok=True)
    lines = ["stimulus_id\tcaption\tfile"]
    for i in ids:
        Image.fromarray(pattern(i, size)).save(folder / "pics" / f"{i}.png")
        lines.append(f"{i}\tpicture {i}\tpics/{i}.png")
    (folder / "stimuli.tsv").write_text("\n".join(lines) + "\n")
    return folder
