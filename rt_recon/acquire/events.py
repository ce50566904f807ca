"""BIDS ``events.tsv`` files: one row per event, ``onset`` and ``duration`` in seconds."""

from __future__ import annotations

import csv
from pathlib import Path

from rt_recon.errors import DataError


def read_events(path: str | Path) -> list[dict]:
    """Rows as dicts; ``onset``/``duration`` become floats, ``stimulus_id`` an int if present."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"events file not found: {path} (expected a BIDS events.tsv)")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    for i, row in enumerate(rows):
        for key in ("onset", "duration"):
            try:
                row[key] = float(row[key])
            except (KeyError, TypeError, ValueError):
                raise DataError(
                    f"{path}: line {i + 2}: expected a number in column {key!r}, "
                    f"found {row.get(key)!r}"
                ) from None
        sid = row.get("stimulus_id")
        if sid in (None, "", "n/a"):
            row.pop("stimulus_id", None)
        else:
            try:
                row["stimulus_id"] = int(sid)
            except ValueError:
                raise DataError(
                    f"{path}: line {i + 2}: expected an integer stimulus_id, found {sid!r}"
                ) from None
    return rows
