"""The project's error hierarchy.

Every error a user can cause is an :class:`RtReconError` whose message says
what was expected, what was found, and (where it helps) what to do.
"""

from __future__ import annotations


class RtReconError(Exception):
    """Base class of every error rt_recon raises on purpose."""


class ConfigError(RtReconError):
    """A session config file is missing, malformed, or fails validation."""


class ProtocolError(RtReconError):
    """A message on a wire (LSL metadata, ZeroMQ frame) does not follow docs/protocol.md."""


class StreamError(RtReconError):
    """An LSL stream or ZeroMQ endpoint could not be found, opened or read."""


class ShapeMismatchError(RtReconError):
    """Two sides that must agree on a shape (stream vs bundle, bundle vs model) do not."""


class BundleError(RtReconError):
    """A decoder bundle file is missing, malformed, or of an unsupported version."""


class ModelError(RtReconError):
    """A render-model directory is missing or incomplete."""


class DataError(RtReconError):
    """Input data (a run, an events file, a volume) is missing or malformed."""


class StorageError(RtReconError):
    """A file could not be written: the disk is full, a file size limit was reached, I/O failed.

    ``errno`` is the operating system's error number where it is known.
    """

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno
