"""A render model records the world it was trained on; a session of another world version,
whose test pictures that model may have seen, is warned of."""

from __future__ import annotations

import json
import logging

import pytest

from rt_recon.apps.demo import warn_if_test_pictures_were_seen
from rt_recon.errors import ModelError
from rt_recon.render.embedded import EMBEDDED_DIR, WORLD_FILE, trained_world_version
from rt_recon.simulators.world import StimulusWorld


def test_the_embedded_model_says_it_was_trained_on_the_default_world():
    from rt_recon.config import SimulationSection

    record = json.loads((EMBEDDED_DIR / WORLD_FILE).read_text())
    assert trained_world_version(EMBEDDED_DIR) == SimulationSection().world_version == 2
    world = StimulusWorld(seed=record["seed"], version=record["version"])
    assert record["n_pictures"] == len(world.training_ids())


def test_a_session_of_another_world_is_warned_of_and_the_same_one_is_not(tmp_path, caplog):
    (tmp_path / WORLD_FILE).write_text(json.dumps({"seed": 0, "version": 2, "n_pictures": 9}))
    with caplog.at_level(logging.WARNING, logger="rt_recon"):
        warn_if_test_pictures_were_seen(tmp_path, 2)
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="rt_recon"):
        warn_if_test_pictures_were_seen(tmp_path, 1)
    (record,) = caplog.records
    assert "trained on world version 2 and this session shows version 1" in record.message
    assert "--world-version 1" in record.message


def test_a_model_without_a_record_is_not_warned_of_and_a_bad_record_is_an_error(tmp_path):
    assert trained_world_version(tmp_path) is None
    (tmp_path / WORLD_FILE).write_text('{"seed": 0}')
    with pytest.raises(ModelError, match="expected JSON with an integer 'version'"):
        trained_world_version(tmp_path)
