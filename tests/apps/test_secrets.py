"""Secrets never on disk (issue #15, item 6): the console token in a session's config is in
no file under its output folder (the config the nodes read, their logs, the HDF5 recording)
and in nothing ``rt-recon run`` prints, while the console still asks for it and accepts it.

The token reaches the console node through its environment (``RT_RECON_CONSOLE_TOKEN``);
every writer of a config writes :meth:`SessionConfig.redacted`.
"""

from __future__ import annotations

import http.client
import re
import signal
import time

import pytest

from rt_recon.acquire.nifti import load_nifti_run
from rt_recon.config import CONSOLE_TOKEN_ENV, SessionConfig, load_config, validate_config
from rt_recon.errors import ConfigError
from rt_recon.record.recording import RecordingReader
from tests.conftest import free_port
from tests.nodes._heartbeats import wait_for_heartbeat

TOKEN = "Zq0-tLr4_w8YcE2nPk7sVb1u"  # 24 URL-safe characters


def test_a_redacted_config_has_no_token_and_loads_back_with_it_from_the_environment(
    tmp_path, monkeypatch
):
    monkeypatch.delenv(CONSOLE_TOKEN_ENV, raising=False)
    config = SessionConfig.model_validate({"console": {"token": TOKEN}})
    assert TOKEN in config.to_json()  # the config itself keeps it: a node uses it
    path = tmp_path / "session.json"
    path.write_text(config.to_json(redact=True))
    assert TOKEN not in path.read_text()
    assert TOKEN not in str(config.redacted().model_dump(mode="json"))
    assert config.secret_env() == {CONSOLE_TOKEN_ENV: TOKEN}
    assert load_config(path).console.token is None
    monkeypatch.setenv(CONSOLE_TOKEN_ENV, TOKEN)
    assert load_config(path).console.token == TOKEN
    assert SessionConfig().redacted() == SessionConfig() and SessionConfig().secret_env() == {}


def test_two_sources_of_the_token_are_a_config_error(tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    monkeypatch.setenv(CONSOLE_TOKEN_ENV, TOKEN)
    path = tmp_path / "session.json"
    path.write_text(SessionConfig(console={"token_file": token_file}).to_json())
    with pytest.raises(ConfigError, match=f"console.token_file is set and so is the environment "
                       f"variable {CONSOLE_TOKEN_ENV}: expected one source"):  # fmt: skip
        load_config(path)
    path.write_text(SessionConfig(console={"token": "another-token-of-24-chars"}).to_json())
    with pytest.raises(ConfigError, match=f"console.token differs from the environment variable "
                       f"{CONSOLE_TOKEN_ENV}: expected one console token, found two"):  # fmt: skip
        load_config(path)
    path.write_text(SessionConfig(console={"token": TOKEN}).to_json())
    assert load_config(path).console.token == TOKEN  # the same token twice is no conflict


def test_a_config_error_about_the_token_does_not_show_it():
    secret = 98765432109876543210  # YAML reads an all-digit token as a number
    with pytest.raises(ConfigError) as info:
        validate_config({"console": {"token": secret}}, "session.yaml")
    assert "console.token: Input should be a valid string; found a int (value not shown)" in str(
        info.value
    )
    assert str(secret) not in str(info.value)


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _wait_for_console(port: int, timeout: float = 60.0) -> tuple[int, bytes]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _get(port, "/api/state")
        except OSError:
            assert time.monotonic() < deadline, f"no console on port {port} within {timeout} s"
            time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["config", "environment"])
def test_a_console_token_appears_nowhere_on_disk(
    node_config, small_dataset, node_processes, tmp_path, source
):
    """``source``: the token is in the operator's config (it reaches the console alone, through
    its environment), or in the operator's environment (every node inherits it, so every
    node's config holds it: the recorder's config attribute must be redacted)."""
    config = node_config.with_overrides(
        {
            "run.nodes": ["renderer", "decoder", "recorder", "console"],
            "recorder.status_endpoint": f"tcp://127.0.0.1:{free_port()}",
            "console.port": free_port(),
            "console.token": TOKEN,
            "stream.buffer_trs": 16,
            "replay.speed": 4.0,
        }
    )
    operator_config = tmp_path / "operator.json"  # the operator's own file, outside output_dir
    if source == "config":
        operator_config.write_text(config.to_json())
        env, token_source = {}, f"console.token in {operator_config}"
    else:
        operator_config.write_text(config.to_json(redact=True))
        env, token_source = (
            {CONSOLE_TOKEN_ENV: TOKEN},
            f"the environment variable {CONSOLE_TOKEN_ENV}",
        )
    session = node_processes.supervisor.start("session", ["run", str(operator_config)], env=env)

    # the console got its token: it refuses a request without it and lets one with it in
    port = config.console.port
    status, body = _wait_for_console(port)
    assert status == 401 and b"access token required" in body
    assert _get(port, "/api/state", {"Authorization": f"Bearer {TOKEN}"})[0] == 200

    files = small_dataset.runs("test")[0]
    n_trs = len(load_nifti_run(files.bold, files.events).volumes)
    replay = node_processes.replay_when_ready(  # its own config file: without the token too
        config.redacted(), files.bold, "--events", files.events
    )
    assert replay.wait(timeout=120) == 0, replay.tail()
    wait_for_heartbeat(
        config.recorder.status_endpoint,
        lambda beat: beat["volumes"] >= n_trs and beat["frames"] >= 1,
        f"that has recorded {n_trs} volumes and a frame",
        timeout=120,
    )
    decoder = wait_for_heartbeat(
        config.decoder.latents_endpoint,
        lambda beat: beat["tr"] == n_trs - 1,
        f"that has decoded TR {n_trs - 1}",
        timeout=60,
    )
    session.send_signal(signal.SIGINT)
    assert session.wait(timeout=60) == 0, session.tail(40)

    out = session.log_text()  # what `rt-recon run` printed and logged
    base = f"http://127.0.0.1:{port}"
    assert f"  console:     {base}/console\n" in out
    assert f"  participant: {base}/participant\n" in out
    assert (
        "  access token required: open the page with ?token=<token>; the token is in "
        f"{token_source} (not printed here)\n"
    ) in out
    recording = config.recording_path
    assert f"  recording:   {recording}\n" in out
    assert f"  TRs:       {n_trs} ({decoder['missed']} missed, {decoder['skipped']} skipped)" in out
    frames = re.search(r"\n  frames:    (\d+) rendered\n", out)
    assert frames is not None and int(frames.group(1)) >= 1
    assert f"  recording: {recording} ({n_trs} volumes, " in out

    with RecordingReader(recording) as reading:
        recorded = reading.attr("config")
    assert recorded["console"]["token"] is None  # the config attribute is there, redacted
    assert recorded["console"]["port"] == port

    output_dir = config.paths.output_dir
    written = [p for p in output_dir.rglob("*") if p.is_file()]
    names = {p.relative_to(output_dir).as_posix() for p in written}
    assert {"session.json", "recording.h5", "logs/console.log", "logs/recorder.log"} <= names
    holding = [p for p in written if TOKEN.encode() in p.read_bytes()]
    assert holding == [], f"the console token is written in {holding}"
    assert TOKEN not in out
