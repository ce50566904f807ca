"""Who may open the console: loopback by default, a token on anything else.

* A console bound to a loopback address serves this machine only. With no
  token it also refuses requests whose ``Host`` is not a loopback name, so a
  web page elsewhere cannot reach it through DNS rebinding.
* A console bound to any other address refuses to start without a token
  (``console.token`` or ``console.token_file``). Every request, pages,
  pictures, static files and WebSocket handshakes alike, must then carry it:
  as ``?token=...`` (the page answers with a cookie and a redirect that drops
  it from the address bar), that cookie, or an ``Authorization: Bearer``
  header. Without it, HTTP gets 401 and a WebSocket handshake is refused
  (403).
* A WebSocket handshake whose ``Origin`` is another site is refused.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from rt_recon.config import ConsoleSection
from rt_recon.errors import ConfigError

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16
#: Token characters: safe in a URL query, a cookie and a header without quoting.
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~+/=-]+")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
#: RFC 6455 close code "policy violation": a handshake refused this way is answered 403.
_POLICY_VIOLATION = 1008


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(section: ConsoleSection) -> str | None:
    """The access token the config asks for, or None on a loopback bind without one.

    Raises :class:`ConfigError` for a token file that cannot be read, a token
    shorter than :data:`MIN_TOKEN_CHARS`, or a non-loopback bind without a token.
    """
    token = section.token
    if section.token_file is not None:
        token = _read_token_file(section.token_file)
    if token is not None and (len(token) < MIN_TOKEN_CHARS or not _TOKEN_CHARS.fullmatch(token)):
        raise ConfigError(
            f"console token must be at least {MIN_TOKEN_CHARS} characters of letters, digits "
            f"and ._~+/=-, found {len(token)} characters"
            + ("" if _TOKEN_CHARS.fullmatch(token) else " including others")
            + "; make one with: python -c 'import secrets; print(secrets.token_urlsafe(24))'"
        )
    if token is None and not is_loopback_host(section.host):
        raise ConfigError(
            f"console.host {section.host!r} is not a loopback address, so the console needs "
            "an access token: set console.token or console.token_file (found neither), "
            "or bind 127.0.0.1"
        )
    return token


def _read_token_file(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"console.token_file {path}: cannot read it ({exc.strerror})") from None
    if not token:
        raise ConfigError(f"console.token_file {path}: expected a token, found an empty file")
    return token


def cookie_name(port: int) -> str:
    """Cookies are per host, not per port: name them by port so two consoles do not clash."""
    return f"rt_recon_token_{port}"


class AccessGuard:
    """ASGI middleware that lets a request through only if it may see the console."""

    def __init__(self, app: ASGIApp, token: str | None, port: int):
        self.app = app
        self.token = token
        self.cookie = cookie_name(port)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            log.warning(
                "refused %s %s from %s: %s",
                scope["type"],
                scope.get("path"),
                (scope.get("client") or ("?",))[0],
                refusal,
            )
            if scope["type"] == "websocket":
                await WebSocketClose(code=_POLICY_VIOLATION, reason=refusal)(scope, receive, send)
            else:
                await PlainTextResponse(refusal + "\n", status_code=401)(scope, receive, send)
            return
        if scope["type"] == "http" and self.token is not None and _query_token(scope):
            await self._set_cookie_and_redirect(scope)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, headers: Headers) -> str | None:
        """Why this request is refused, or None if it may pass."""
        host = headers.get("host", "")
        if scope["type"] == "websocket":
            origin = headers.get("origin")
            if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
                return f"WebSocket from another origin ({origin}, this is {host})"
        if self.token is None:
            hostname = urlsplit(f"//{host}").hostname or ""
            if not is_loopback_host(hostname):
                return f"this console serves loopback only, found Host {host!r}"
            return None
        offered = _query_token(scope) or _cookie(headers, self.cookie)
        authorization = headers.get("authorization", "")
        if not offered and authorization.lower().startswith("bearer "):
            offered = authorization[len("bearer ") :].strip()
        if not offered:
            return "access token required: open the page with ?token=<console token>"
        if not hmac.compare_digest(offered.encode(), self.token.encode()):
            return "wrong access token"
        return None

    def _set_cookie_and_redirect(self, scope: Scope) -> Response:
        query = [
            (k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode()) if k != "token"
        ]
        target = scope["path"] + (f"?{urlencode(query)}" if query else "")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            self.cookie, self.token or "", httponly=True, samesite="strict", path="/"
        )
        return response


def _query_token(scope: Scope) -> str | None:
    for key, value in parse_qsl(scope.get("query_string", b"").decode()):
        if key == "token":
            return value
    return None


def _cookie(headers: Headers, name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None
