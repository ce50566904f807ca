"""The true stimuli: a dataset's pictures, by stimulus id, for the console's side-by-side view."""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.responses import PlainTextResponse, Response

from rt_recon.dataset import BLANK_ID, Dataset
from rt_recon.errors import DataError

log = logging.getLogger(__name__)


class StimulusPictures:
    """``stimulus_id -> picture file`` from a dataset's ``stimuli/stimuli.tsv``."""

    def __init__(self, table: dict[int, tuple[str, Path]]):
        self._paths = {i: path for i, (_, path) in table.items() if i != BLANK_ID}

    @classmethod
    def open(cls, root: Path) -> StimulusPictures:
        """Read the stimulus table of the dataset at ``root`` (a :class:`DataError` if absent)."""
        pictures = cls(Dataset.open(root).stimuli())
        missing = [i for i, path in pictures._paths.items() if not path.is_file()]
        if missing:
            raise DataError(
                f"{root}: {len(missing)} stimulus pictures listed in stimuli.tsv are missing, "
                f"e.g. id {missing[0]} ({pictures._paths[missing[0]]})"
            )
        log.info("%d stimulus pictures from %s", len(pictures._paths), root)
        return pictures

    def __len__(self) -> int:
        return len(self._paths)

    def __contains__(self, stimulus_id: int) -> bool:
        return stimulus_id in self._paths

    def response(self, stimulus_id: int) -> Response:
        path = self._paths.get(stimulus_id)
        if path is None:
            return PlainTextResponse(f"no stimulus {stimulus_id}\n", status_code=404)
        media = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
        return Response(
            path.read_bytes(), media_type=media, headers={"Cache-Control": "max-age=3600"}
        )
