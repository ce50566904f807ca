"""ZeroMQ CURVE for rt_recon's sockets: keys from certificate files, a ZAP authenticator.

A publisher (XPUB, binds) is the CURVE *server*: it holds the server's
secret certificate and lets in only the clients whose public certificates
lie in the authorised folder. A subscriber (SUB, connects) is the CURVE
*client*: it holds its own secret certificate and the server's public one,
so it also knows it is talking to the real server. Traffic is encrypted.

Which endpoints use CURVE is the config's ``security`` section
(:class:`rt_recon.config.SecuritySection`): by default every non-loopback
tcp endpoint, and only those. Certificates are ZeroMQ's ZPL text files
(``zmq.auth.create_certificates``; keys in Z85), never pickle.

Client keys are checked by a ZAP handler (pyzmq's ``ThreadAuthenticator``),
one per ZeroMQ context, shared by every CURVE server socket of that context;
each socket has its own ZAP domain and its own set of authorised keys. The
handler runs before the socket binds and stops after it closes, so no
connection is ever accepted unchecked.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.base import Authenticator
from zmq.auth.thread import ThreadAuthenticator

from rt_recon.config import SecuritySection
from rt_recon.errors import ConfigError

log = logging.getLogger(__name__)

#: Certificate names ``rt-recon keys`` writes.
SERVER_NAME = "server"
CLIENT_NAME = "client"
AUTHORIZED_DIR = "authorized_clients"


def _secret_certificate(path: Path, key: str) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys of the secret certificate that ``security.<key>`` names."""
    public, secret = _read_certificate(path, key)
    if secret is None:
        raise ConfigError(
            f"security.{key}: expected a secret certificate (a *.key_secret file with a "
            f"secret-key line), found a public certificate only: {path}"
        )
    return public, secret


def _read_certificate(path: Path, key: str) -> tuple[bytes, bytes | None]:
    try:
        return zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"security.{key}: expected a ZeroMQ certificate file (`rt-recon keys DIR` writes "
            f"them), cannot read {path}: {exc}"
        ) from None


def _missing(security: SecuritySection, keys: tuple[str, ...]) -> list[str]:
    return [f"security.{k}" for k in keys if getattr(security, k) is None]


def _policy_error(endpoint: str, role: str, missing: list[str], security: SecuritySection) -> str:
    why = (
        "security.curve is always"
        if security.curve == "always"
        else f"{endpoint} is not a loopback endpoint"
    )
    return (
        f"{role} {endpoint} needs ZeroMQ CURVE keys ({why}): set {', '.join(missing)} "
        "(`rt-recon keys DIR` writes them)"
    )


@dataclass(frozen=True)
class ServerKeys:
    """What a CURVE server socket needs: its key pair and the client keys it lets in (Z85)."""

    public: bytes
    secret: bytes
    authorized: frozenset[bytes]
    authorized_dir: Path


@dataclass(frozen=True)
class ClientKeys:
    """What a CURVE client socket needs: its key pair and the server's public key (Z85)."""

    public: bytes
    secret: bytes
    server_public: bytes


def server_keys(security: SecuritySection | None, endpoint: str) -> ServerKeys | None:
    """Keys for a publisher bound to ``endpoint``, or None where the policy leaves CURVE off.

    ``security`` None is the default policy (CURVE on non-loopback tcp, no
    keys), so binding a non-loopback endpoint without keys is a ConfigError.
    """
    security = security or SecuritySection()
    if not security.curve_on(endpoint):
        return None
    needed = ("curve_server_cert", "curve_authorized_clients")
    missing = _missing(security, needed)
    if missing:
        raise ConfigError(_policy_error(endpoint, "binding", missing, security))
    assert security.curve_server_cert is not None and security.curve_authorized_clients is not None
    cert = security.curve_server_cert.expanduser()
    folder = security.curve_authorized_clients.expanduser()
    public, secret = _secret_certificate(cert, "curve_server_cert")
    try:
        authorized = frozenset(zmq.auth.load_certificates(folder))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"security.curve_authorized_clients: expected a folder of client public "
            f"certificates (*.key), cannot read {folder}: {exc}"
        ) from None
    if not authorized:
        raise ConfigError(
            f"security.curve_authorized_clients: expected at least one client public "
            f"certificate (*.key) in {folder}, found none; copy the clients' *.key files there"
        )
    return ServerKeys(public, secret, authorized, folder)


def client_keys(security: SecuritySection | None, endpoint: str) -> ClientKeys | None:
    """Keys for a subscriber connecting to ``endpoint``, or None where CURVE is off."""
    security = security or SecuritySection()
    if not security.curve_on(endpoint):
        return None
    needed = ("curve_client_cert", "curve_server_public")
    missing = _missing(security, needed)
    if missing:
        raise ConfigError(_policy_error(endpoint, "subscribing to", missing, security))
    assert security.curve_client_cert is not None and security.curve_server_public is not None
    public, secret = _secret_certificate(
        security.curve_client_cert.expanduser(), "curve_client_cert"
    )
    server_public, _ = _read_certificate(
        security.curve_server_public.expanduser(), "curve_server_public"
    )
    return ClientKeys(public, secret, server_public)


def configure_client(socket: zmq.Socket, keys: ClientKeys) -> None:
    """Make ``socket`` a CURVE client (before it connects)."""
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.curve_serverkey = keys.server_public


class _AuthorizedKeys:
    """The ZAP credentials callback of one server socket; logs each refused key once."""

    def __init__(self, keys: ServerKeys):
        self._keys = keys
        self._refused: set[bytes] = set()

    def callback(self, domain: str, z85_key: bytes) -> bool:
        if z85_key in self._keys.authorized:
            return True
        level = logging.DEBUG if z85_key in self._refused else logging.WARNING
        self._refused.add(z85_key)
        log.log(
            level,
            "refused a ZeroMQ client with CURVE key %s: not among the %d authorised keys in %s",
            z85_key.decode(errors="replace"),
            len(self._keys.authorized),
            self._keys.authorized_dir,
        )
        return False


#: Where libzmq asks a context's ZAP handler (RFC 27); one handler per context binds it.
ZAP_ENDPOINT = "inproc://zeromq.zap.01"


class _ReleasingZapEndpoint(Authenticator):
    def stop(self) -> None:
        # Closing a socket frees its inproc endpoint only once libzmq's reaper has torn the
        # socket down, later; unbinding frees it now, for the next authenticator on the context.
        if self.zap_socket is not None:
            self.zap_socket.unbind(ZAP_ENDPOINT)
        super().stop()


class _Authenticator(ThreadAuthenticator, _ReleasingZapEndpoint):
    """pyzmq's ThreadAuthenticator, safe to start right after another one on the same context
    stopped (as when a CURVE server opens just after the last one closed): its ``stop()``
    (once its thread has ended) frees the ZAP endpoint at once, and its thread's pipe is
    bound at an endpoint of its own (pyzmq's is named after ``id(self)``, which a new
    authenticator may reuse while the old pipe's endpoint is still being released)."""

    def __init__(self, context: zmq.Context, log: logging.Logger):
        super().__init__(context, log=log)
        self.pipe_endpoint = f"inproc://rt_recon-zap-pipe-{os.getpid()}-{next(_pipes)}"


_pipes = itertools.count()


_lock = threading.Lock()
_authenticators: dict[int, tuple[ThreadAuthenticator, set[str]]] = {}
_domains = itertools.count()


class CurveServer:
    """A socket's CURVE server role: its ZAP domain on the context's running authenticator.

    Created by :func:`serve_curve` before the socket binds; :meth:`close` it
    after the socket is closed.
    """

    def __init__(self, context: zmq.Context, domain: str):
        self._context = context
        self.domain = domain
        self._closed = False

    def close(self) -> None:
        """Forget this socket's keys; stop the authenticator when no socket uses it any more."""
        if self._closed:
            return
        self._closed = True
        with _lock:
            auth, domains = _authenticators[id(self._context)]
            domains.discard(self.domain)
            auth.credentials_providers.pop(self.domain, None)
            if not domains:
                del _authenticators[id(self._context)]
                auth.stop()
                log.debug("ZAP authenticator stopped")


def serve_curve(socket: zmq.Socket, context: zmq.Context, keys: ServerKeys) -> CurveServer:
    """Make ``socket`` a CURVE server (before it binds) checked by the context's authenticator."""
    domain = f"rt_recon-{os.getpid()}-{next(_domains)}"
    with _lock:
        entry = _authenticators.get(id(context))
        if entry is None:
            auth = _Authenticator(context, log=logging.getLogger(f"{__name__}.zap"))
            try:
                auth.start()
            except zmq.ZMQError as exc:
                raise ConfigError(
                    f"cannot start the ZeroMQ authenticator: {exc.strerror} (is another ZAP "
                    "handler running on this context?)"
                ) from None
            entry = _authenticators[id(context)] = (auth, set())
            log.debug("ZAP authenticator started")
        auth, domains = entry
        auth.configure_curve_callback(domain, credentials_provider=_AuthorizedKeys(keys))
        domains.add(domain)
    socket.zap_domain = domain.encode()
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.curve_server = True
    return CurveServer(context, domain)


@dataclass(frozen=True)
class CertificateFiles:
    """The certificates :func:`write_certificates` wrote."""

    server_secret: Path
    server_public: Path
    client_secret: Path
    client_public: Path
    authorized_clients: Path

    def settings(self) -> dict[str, str]:
        """The ``security`` keys that use these certificates (key -> path)."""
        return {
            "curve_server_cert": str(self.server_secret),
            "curve_authorized_clients": str(self.authorized_clients),
            "curve_client_cert": str(self.client_secret),
            "curve_server_public": str(self.server_public),
        }

    def overrides(self) -> dict[str, str]:
        """:meth:`settings` as dotted config overrides (``security.curve_server_cert``...)."""
        return {f"security.{key}": value for key, value in self.settings().items()}

    def config_lines(self) -> str:
        """The ``security`` section that uses these certificates (YAML)."""
        return "security:\n" + "".join(f"  {k}: {v}\n" for k, v in self.settings().items())


def write_certificates(folder: str | Path, overwrite: bool = False) -> CertificateFiles:
    """Write a server and a client certificate pair and ``authorized_clients/client.key``.

    Secret certificates are readable by their owner only (mode 0600). Existing
    certificates are a ConfigError unless ``overwrite``.
    """
    folder = Path(folder).expanduser().resolve()
    authorized = folder / AUTHORIZED_DIR
    names = [
        folder / f"{n}.{ext}" for n in (SERVER_NAME, CLIENT_NAME) for ext in ("key", "key_secret")
    ]
    names.append(authorized / f"{CLIENT_NAME}.key")
    existing = [str(p) for p in names if p.exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"expected no certificates in {folder}, found {', '.join(existing)}; "
            "pick another folder or pass --force to replace them"
        )
    authorized.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in (SERVER_NAME, CLIENT_NAME):
        public, secret = zmq.auth.create_certificates(folder, name)
        os.chmod(secret, 0o600)
        paths[name] = (Path(public), Path(secret))
    client_copy = authorized / f"{CLIENT_NAME}.key"
    client_copy.write_bytes(paths[CLIENT_NAME][0].read_bytes())
    log.info("wrote CURVE certificates to %s", folder)
    return CertificateFiles(
        server_secret=paths[SERVER_NAME][1],
        server_public=paths[SERVER_NAME][0],
        client_secret=paths[CLIENT_NAME][1],
        client_public=paths[CLIENT_NAME][0],
        authorized_clients=authorized,
    )
