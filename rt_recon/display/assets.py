"""The console's static files, served by name from a table built at start-up.

Every regular file directly in ``rt_recon/display/static`` is read once and
looked up by its bare name; a request never becomes a filesystem path, so
no URL (``..``, encoded slashes, symlinks) can reach outside the folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.responses import PlainTextResponse, Response

from rt_recon.errors import DataError

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

#: Pages load scripts, styles, pictures and sockets from this server only.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


class StaticAssets:
    """``{name: (bytes, content type)}`` for the files of one folder (not its subfolders)."""

    def __init__(self, folder: Path = STATIC_DIR):
        self._files: dict[str, tuple[bytes, str]] = {}
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.is_symlink() or not path.is_file() or path.suffix not in CONTENT_TYPES:
                continue
            self._files[path.name] = (path.read_bytes(), CONTENT_TYPES[path.suffix])
        if not self._files:
            raise DataError(
                f"no console assets in {folder}: expected .html/.js/.css/.json files; "
                "is the package installed completely?"
            )

    @property
    def names(self) -> list[str]:
        return sorted(self._files)

    def response(self, name: str) -> Response:
        """The file called ``name``, or 404 for any name not in the table."""
        entry = self._files.get(name)
        if entry is None:
            return PlainTextResponse("not found\n", status_code=404)
        content, media_type = entry
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if media_type.startswith("text/html"):
            headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
            headers["Referrer-Policy"] = "no-referrer"
        return Response(content, media_type=media_type, headers=headers)
