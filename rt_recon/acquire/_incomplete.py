"""The one error that means "try again later" rather than "this file is bad"."""

from __future__ import annotations

from rt_recon.errors import DataError


class IncompleteFileError(DataError):
    """A file ends before its own header says it should: still being written, or truncated.

    The bridge retries such a file when it changes, and reports it as
    unreadable only once it has stayed unchanged for a while.
    """
