"""Loopback by default; on any other address, no token, no pages, no sockets."""

from __future__ import annotations

import subprocess
import sys

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from rt_recon.config import ConsoleSection, validate_config
from rt_recon.display.auth import cookie_name, is_loopback_host, resolve_token
from rt_recon.errors import ConfigError
from tests.display._helpers import ConsoleProcess, console_config

TOKEN = "Zq0-tLr4_w8YcE2nPk7sVb1u"  # 24 URL-safe characters


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("192.168.1.20", False), ("::", False),
     ("scanner-pc.local", False)],
)  # fmt: skip
def test_loopback_hosts(host, loopback):
    assert is_loopback_host(host) is loopback


def test_a_non_loopback_bind_without_a_token_is_a_config_error():
    with pytest.raises(ConfigError, match=r"console.host '0.0.0.0' is not a loopback address.*"
                       r"set console.token or console.token_file \(found neither\)"):  # fmt: skip
        resolve_token(ConsoleSection(host="0.0.0.0"))
    assert resolve_token(ConsoleSection(host="127.0.0.1")) is None
    assert resolve_token(ConsoleSection(host="0.0.0.0", token=TOKEN)) == TOKEN


def test_token_from_a_file_and_its_errors(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    assert resolve_token(ConsoleSection(host="0.0.0.0", token_file=path)) == TOKEN
    path.write_text("")
    with pytest.raises(ConfigError, match="expected a token, found an empty file"):
        resolve_token(ConsoleSection(host="0.0.0.0", token_file=path))
    with pytest.raises(ConfigError, match="cannot read it"):
        resolve_token(ConsoleSection(host="0.0.0.0", token_file=tmp_path / "absent"))
    with pytest.raises(ConfigError, match=r"at least 16 characters.*found 5 characters"):
        resolve_token(ConsoleSection(token="short"))
    with pytest.raises(ConfigError, match="found 24 characters including others"):
        resolve_token(ConsoleSection(token="has;a;semicolon;in;it;xx"))
    with pytest.raises(ConfigError, match=r"set console\.token or console\.token_file, not both"):
        validate_config({"console": {"token": TOKEN, "token_file": str(path)}}, "test.yaml")


@pytest.mark.slow
def test_the_console_refuses_to_start_on_a_non_loopback_address_without_a_token(tmp_path):
    config = console_config(tmp_path, host="0.0.0.0")
    path = tmp_path / "session.json"
    path.write_text(config.to_json())
    result = subprocess.run(
        [sys.executable, "-m", "rt_recon", "console", "--config", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "console.host '0.0.0.0' is not a loopback address" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_on_a_non_loopback_bind_pages_and_sockets_refuse_access_without_the_token(tmp_path):
    config = console_config(tmp_path, host="0.0.0.0", token=TOKEN)
    with ConsoleProcess(config, tmp_path / "session.json") as console:
        cookie = f"{cookie_name(console.port)}={TOKEN}"
        paths = ["/", "/console", "/participant", "/static/console.js", "/api/state",
                 "/stimuli/1.png"]  # fmt: skip
        for path in paths:
            status, _, body = console.get(path)
            assert status == 401, path
            assert b"access token required" in body
            assert console.get(path + "?token=wrong-token-of-enough-length")[0] == 401
            assert console.get(path, {"Cookie": f"{cookie_name(console.port)}=nope"})[0] == 401
        ws = f"ws://127.0.0.1:{console.port}"
        for path in ("/ws/participant", "/ws/console"):
            for headers in ({}, {"Cookie": f"{cookie_name(console.port)}=wrong"},
                            {"Authorization": "Bearer wrong"}):  # fmt: skip
                with pytest.raises(InvalidStatus) as refused:
                    connect(ws + path, additional_headers=headers, open_timeout=10).close()
                assert refused.value.response.status_code == 403

        # with the token: a link with ?token= sets a cookie and drops the token from the URL
        status, headers, _ = console.get("/console?token=" + TOKEN)
        assert status == 303 and headers["location"] == "/console"
        assert headers["set-cookie"].startswith(cookie + ";")
        assert "HttpOnly" in headers["set-cookie"] and "SameSite=strict" in headers["set-cookie"]
        assert console.get("/console", {"Cookie": cookie})[0] == 200
        assert console.get("/api/state", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        with connect(ws + "/ws/console", additional_headers={"Cookie": cookie}) as socket:
            assert '"type": "state"' in socket.recv(timeout=10)
        # a page of another site cannot open the socket, even with the cookie
        with pytest.raises(InvalidStatus):
            connect(
                ws + "/ws/console",
                additional_headers={"Cookie": cookie},
                origin="http://evil.example",
                open_timeout=10,
            ).close()
        assert console.stop() == 0


@pytest.mark.slow
def test_a_loopback_console_refuses_other_host_names_and_origins(tmp_path):
    with ConsoleProcess(console_config(tmp_path), tmp_path / "session.json") as console:
        assert console.get("/console")[0] == 200
        assert console.get("/console", {"Host": f"localhost:{console.port}"})[0] == 200
        status, _, body = console.get("/console", {"Host": f"attacker.example:{console.port}"})
        assert status == 401 and b"loopback only" in body
        with pytest.raises(InvalidStatus):
            connect(f"ws://127.0.0.1:{console.port}/ws/participant",
                    origin="http://attacker.example", open_timeout=10).close()  # fmt: skip
