"""``rt-recon present``'s refusals: each a one-line error with exit code 2, before anything
is served or written."""

from __future__ import annotations

import pytest

from rt_recon.cli import main
from tests.display._helpers import console_config
from tests.display._stimuli import write_stimulus_set


def _present(tmp_path, *args: str) -> int:
    config = tmp_path / "session.json"
    config.write_text(console_config(tmp_path).to_json())
    return main(["present", "--config", str(config), *args])


def test_present_refuses_bad_stimuli_and_bad_designs(tmp_path, capsys):
    stim = write_stimulus_set(tmp_path / "stim", [1, 2, 3])
    events = tmp_path / "events.tsv"
    cases = [
        ((str(tmp_path / "none"),), "no stimulus table"),
        ((str(stim), "--test-ids", "9"), r"test_ids [9] are not in the stimulus set"),
        ((str(stim), "--catch", "4"), "n_catch 4 is more than the 3 picture trials"),
        ((str(stim), "--duration", "0"), "bad design option"),
        ((str(stim), "--trigger-key", "1"), "--trigger-key '1' is also a response key"),
        # cued imagery runs: no catch trials (no picture to repeat), a cue only for imagery
        ((str(stim), "--task", "imagery", "--catch", "1"), "an imagery run has no catch trials"),
        ((str(stim), "--cue-s", "2"), "cue_s (2.0) applies to imagery runs"),
        ((str(stim), "--task", "imagery", "--cue-s", "0"), "bad design option"),
        ((str(stim), "--task", "dream"), None),  # argparse: not a choice
    ]
    for args, message in cases:
        if message is None:
            with pytest.raises(SystemExit) as refused:
                _present(tmp_path, *args, "--events", str(events))
            assert refused.value.code == 2, args
            assert "invalid choice: 'dream'" in capsys.readouterr().err
        else:
            assert _present(tmp_path, *args, "--events", str(events)) == 2, args
            assert message in capsys.readouterr().err, args
        assert not events.exists()
