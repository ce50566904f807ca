"""Preflight: what would stop a node is refused before any node starts.

A decoder bundle fitted for another render model; a port another process listens on
(while a port left in TIME_WAIT by a session that just ended is free); two endpoints on
one port; a node listed twice; an existing recording; a console token that breaks its rules.
"""

from __future__ import annotations

import json
import shutil

import pytest
import zmq

from rt_recon.apps.preflight import check_before_start
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.errors import BundleError, ConfigError, DataError, StreamError
from rt_recon.render.model import model_fingerprint
from tests.apps._ports import in_time_wait, leave_in_time_wait, plain_bind_fails
from tests.conftest import free_port


@pytest.fixture
def config(node_config):
    """``node_config`` with every endpoint on a free port (the recorder's status too)."""
    return node_config.with_overrides(
        {"recorder.status_endpoint": f"tcp://127.0.0.1:{free_port()}"}
    )


@pytest.fixture
def other_model(tiny_model_dir, tmp_path):
    """The tiny model with another scheduler setting: another fingerprint, the same shapes."""
    other = tmp_path / "other_model"
    shutil.copytree(tiny_model_dir, other)
    scheduler = other / "scheduler" / "scheduler_config.json"
    settings = json.loads(scheduler.read_text())
    settings["beta_end"] = settings.get("beta_end", 0.012) * 1.5
    scheduler.write_text(json.dumps(settings))
    return other


def test_a_bundle_for_another_model_is_one_line_naming_both_fingerprints(config, other_model):
    other = other_model
    config = config.with_overrides({"renderer.model": str(other)})
    fitted_for = DecoderBundle.load(config.decoder.bundle).model.fingerprint
    found = model_fingerprint(other)
    assert found != fitted_for
    with pytest.raises(BundleError) as info:
        check_before_start(config, ("renderer", "decoder", "recorder"))
    message = str(info.value)
    assert "\n" not in message
    assert f"fitted for render model {fitted_for}" in message and f"is {found}" in message
    assert str(other) in message


def test_the_bundles_own_model_passes(config):
    check_before_start(config, ("renderer", "decoder", "recorder"))


def test_the_renderer_node_refuses_it_at_startup_too(node_config, other_model):
    from rt_recon.nodes.renderer import RendererNode

    config = node_config.with_overrides({"renderer.model": str(other_model)})
    with pytest.raises(BundleError, match=f"is {model_fingerprint(other_model)}"):
        RendererNode(config).prepare()


# --- ports, recordings, tokens and duplicates (issue #15, item 5) ---------------------------

TOKEN = "Zq0-tLr4_w8YcE2nPk7sVb1u"  # 24 URL-safe characters


def test_a_port_left_in_time_wait_is_free_and_a_node_binds_it(node_config):
    port = free_port()
    config = node_config.with_overrides({"decoder.latents_endpoint": f"tcp://127.0.0.1:{port}"})
    leave_in_time_wait(port)
    assert plain_bind_fails(port)  # what the old probe (no SO_REUSEADDR) called "in use"
    check_before_start(config, ("decoder",))
    with zmq.Context() as context, context.socket(zmq.PUB) as node:  # as the decoder binds
        node.bind(config.decoder.latents_endpoint)
    assert in_time_wait(port)  # the state was there throughout


def test_a_port_another_process_listens_on_fails_naming_the_node_and_endpoint(node_config):
    endpoint = node_config.renderer.frames_endpoint
    with zmq.Context() as context, context.socket(zmq.PUB) as running:  # SO_REUSEADDR, as nodes
        running.bind(endpoint)
        with pytest.raises(StreamError) as info:
            check_before_start(node_config, ("decoder", "renderer"))
    assert str(info.value) == (
        f"renderer: cannot bind {endpoint}: Address already in use (is another session running?)"
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("renderer.frames_endpoint", "tcp://127.0.0.1:{port}"),
         ("decoder.latents_endpoint", "tcp://127.0.0.1:{port}")),
        (("recorder.status_endpoint", "tcp://127.0.0.1:{port}"),
         ("recorder.control_endpoint", "tcp://127.0.0.1:{port}")),
        (("decoder.latents_endpoint", "tcp://localhost:{port}"),
         ("recorder.status_endpoint", "tcp://127.0.0.1:{port}")),
        (("renderer.frames_endpoint", "tcp://127.0.0.1:{port}"),  # every interface: 0.0.0.0
         ("console.host/console.port", "tcp://0.0.0.0:{port}")),
    ],
)  # fmt: skip
def test_two_endpoints_on_one_port_fail_naming_both(node_config, first, second):
    port = free_port()
    overrides = {"console.token": TOKEN}
    for key, endpoint in (first, second):
        if key.startswith("console"):
            overrides.update({"console.host": "0.0.0.0", "console.port": port})
        else:
            overrides[key] = endpoint.format(port=port)
    config = node_config.with_overrides(overrides)
    with pytest.raises(ConfigError) as info:
        check_before_start(config, ("renderer", "decoder", "recorder", "console"))
    (key, endpoint), (other_key, other) = first, second
    assert str(info.value) == (
        f"{key} {endpoint.format(port=port)} and {other_key} {other.format(port=port)} bind "
        "the same port: expected a port of its own for each endpoint"
    )


def test_a_node_listed_twice_fails(node_config):
    with pytest.raises(ConfigError, match=r"run.nodes lists decoder more than once: expected "
                       r"each node once, found \['decoder', 'renderer', 'decoder'\]"):  # fmt: skip
        check_before_start(node_config, ("decoder", "renderer", "decoder"))


def test_an_existing_recording_fails_naming_the_file(node_config):
    path = node_config.recording_path
    path.parent.mkdir(parents=True)
    path.write_bytes(b"an earlier session")
    with pytest.raises(DataError) as info:
        check_before_start(node_config, ("renderer", "decoder", "recorder"))
    assert str(info.value).startswith(
        f"recorder: {path} exists and a recording is never overwritten"
    )
    check_before_start(node_config, ("renderer", "decoder"))  # no recorder: no matter


def test_the_console_token_rules_are_checked(node_config, tmp_path):
    nodes = ("decoder", "console")

    def check(**console):
        overrides = {"console.port": free_port(), **{f"console.{k}": v for k, v in console.items()}}
        check_before_start(node_config.with_overrides(overrides), nodes)

    with pytest.raises(ConfigError, match="at least 16 characters"):
        check(token="short")
    with pytest.raises(ConfigError, match=r"console\.host '0\.0\.0\.0' is not a loopback"):
        check(host="0.0.0.0")
    with pytest.raises(ConfigError, match="cannot read it"):
        check(token_file=str(tmp_path / "absent"))
    check(token=TOKEN)
    check(host="0.0.0.0", token=TOKEN)
    check_before_start(node_config.with_overrides({"console.token": "short"}), ("decoder",))


def test_a_yoked_recording_that_is_missing_or_unreadable_is_refused_before_the_start(
    config, tmp_path
):
    """docs/study-designs.md: the recording a yoked run shows is checked before any node."""
    missing = config.with_overrides(
        {"feedback": {"condition": "yoked", "yoked_recording": str(tmp_path / "gone.h5")}}
    )
    with pytest.raises(DataError, match=r"yoked recording .*gone\.h5 was not found"):
        check_before_start(missing, ("renderer", "decoder", "recorder"))
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"no recording" * 64)
    unreadable = config.with_overrides(
        {"feedback": {"condition": "yoked", "yoked_recording": str(corrupt)}}
    )
    with pytest.raises(DataError, match="cannot read the yoked recording"):
        check_before_start(unreadable, ("renderer",))
    study = tmp_path / "study.json"
    study.write_text("{not json")
    with pytest.raises(ConfigError, match=r"study\.json: not valid JSON"):
        blinded = config.with_overrides({"feedback.study_file": str(study)})
        check_before_start(blinded, ("recorder",))
