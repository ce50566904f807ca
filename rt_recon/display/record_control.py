"""``POST /api/record``: the console's Start/Stop recording button, passed on to the recorder.

The request body is ``{"command": "start"}`` or ``{"command": "stop"}``; the
answer is the recorder's reply (``{"ok": true, "recording": false}``), or
``{"ok": false, "error": ...}`` with 409 when the recorder refuses (its disk
failed), 502 when it does not answer, 404 when the session has no recorder
control endpoint.

Only a page of the console itself may ask: the request must be JSON (which a
form on another site cannot send without the browser asking first) and,
where the browser says where it comes from (``Origin``), come from this
console's own address. The access guard (token, Host check) applies before.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from rt_recon.errors import StreamError

log = logging.getLogger(__name__)

#: Sends one command to the recorder and returns its reply (blocking; run off the loop).
RecordRequest = Callable[[str], dict[str, Any]]

COMMANDS = ("start", "stop")


def _refused(status: int, error: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": error}, status_code=status)


def _cross_site(request: Request) -> str | None:
    """Why the request does not come from a console page, or None."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return f"expected Content-Type application/json, found {content_type or 'none'!r}"
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin is not None and origin != own:
        return f"expected a request from {own}, found one from {origin}"
    return None


def record_endpoint(send: RecordRequest | None) -> Callable[[Request], Any]:
    """The route handler; ``send`` None where the session has no recorder control endpoint."""

    async def endpoint(request: Request) -> Response:
        problem = _cross_site(request)
        if problem is not None:
            log.warning("refused a record request: %s", problem)
            return _refused(403, problem)
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _refused(400, f'expected a JSON body like {{"command": "stop"}}: {exc}')
        command = body.get("command") if isinstance(body, dict) else None
        if command not in COMMANDS:
            expected = " or ".join(json.dumps({"command": c}) for c in COMMANDS)
            return _refused(400, f"expected {expected}, found {body!r}")
        if send is None:
            return _refused(404, "this session has no recorder control (recorder.control_endpoint)")
        try:
            reply = await asyncio.to_thread(send, command)
        except StreamError as exc:
            return _refused(502, f"the recorder did not answer: {exc}")
        log.info("record %s from the console: %s", command, reply)
        return JSONResponse(reply, status_code=200 if reply.get("ok") else 409)

    return endpoint
