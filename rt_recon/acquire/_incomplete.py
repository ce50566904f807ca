"""The one error that means "try again later" rather than "this file is bad"."""

from __future__ import annotations

from typing import Literal

from rt_recon.errors import DataError

#: What a file found not whole is, as far as its bytes tell: ``truncated`` (a
#: header announcing more than is there: the usual file still being written),
#: or a kind that would be a bad file if it stayed so.
IncompleteKind = Literal[
    "truncated", "empty", "not_dicom", "preamble_only", "par_without_rec", "rec_without_par"
]

_STILL_WRITTEN = " (still being written?)"


class IncompleteFileError(DataError):
    """A file ends before its own header says it should: still being written, or truncated.

    The bridge retries such a file when it changes, and reports it as
    unreadable only once it has stayed unchanged for a while, with
    :meth:`given_up`: what the file is if it stays as it is (``what``, e.g.
    ``"x.dcm: empty file (0 bytes)"``), or that it is still incomplete.

    Args:
        message: why it cannot be read now, naming the file.
        kind: see :data:`IncompleteKind`.
        what: what the file is if no more comes (None for ``truncated``:
            then it is "still incomplete").
    """

    def __init__(
        self, message: str, *, kind: IncompleteKind = "truncated", what: str | None = None
    ):
        super().__init__(message)
        self.kind: IncompleteKind = kind
        self.what = what

    def given_up(self, seconds: float) -> str:
        """The report for a file that stayed like this, unchanged, for ``seconds``."""
        if self.what is not None:
            return f"{self.what}, unchanged for {seconds:g} s"
        text = str(self).removesuffix(_STILL_WRITTEN)
        return f"{text}; still incomplete after {seconds:g} s without a change"
