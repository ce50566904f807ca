"""Preflight: a decoder bundle fitted for another render model is refused before any node starts."""

from __future__ import annotations

import json
import shutil

import pytest

from rt_recon.apps.preflight import check_before_start
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.errors import BundleError
from rt_recon.render.model import model_fingerprint


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


def test_a_bundle_for_another_model_is_one_line_naming_both_fingerprints(node_config, other_model):
    other = other_model
    config = node_config.with_overrides({"renderer.model": str(other)})
    fitted_for = DecoderBundle.load(config.decoder.bundle).model.fingerprint
    found = model_fingerprint(other)
    assert found != fitted_for
    with pytest.raises(BundleError) as info:
        check_before_start(config, ("renderer", "decoder", "recorder"))
    message = str(info.value)
    assert "\n" not in message
    assert f"fitted for render model {fitted_for}" in message and f"is {found}" in message
    assert str(other) in message


def test_the_bundles_own_model_passes(node_config):
    check_before_start(node_config, ("renderer", "decoder", "recorder"))


def test_the_renderer_node_refuses_it_at_startup_too(node_config, other_model):
    from rt_recon.nodes.renderer import RendererNode

    config = node_config.with_overrides({"renderer.model": str(other_model)})
    with pytest.raises(BundleError, match=f"is {model_fingerprint(other_model)}"):
        RendererNode(config).prepare()
