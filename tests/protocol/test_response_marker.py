"""The attention task's ``response`` marker and the BIDS columns it shares with events.tsv."""

from __future__ import annotations

import pytest

from rt_recon.errors import ProtocolError
from rt_recon.protocol import RESPONSE, TRIAL_TYPES, Marker, decode_marker, encode_marker


def test_a_response_round_trips_and_is_no_trial():
    marker = Marker(type=RESPONSE, run="01", trial=5, onset=20.47, key="1", response_time=0.469)
    again = decode_marker(encode_marker(marker))
    assert again == marker
    assert again.to_json()["response_time"] == 0.469
    assert TRIAL_TYPES == ("stimulus", "blank", "catch", "cue", "imagery")


def test_bids_n_a_in_a_response_column_is_no_value_but_a_bad_one_is_refused():
    # a BIDS events.tsv row replayed as a marker, with its optional response_time column
    row = {"onset": "3.0", "duration": "1.0", "stimulus_id": "4", "response_time": "n/a"}
    assert Marker.from_json(row).response_time is None
    assert Marker.from_json({**row, "response_time": "0.52"}).response_time == 0.52
    with pytest.raises(ProtocolError, match="response_time"):
        Marker.from_json({**row, "response_time": "-1"})
    with pytest.raises(ProtocolError, match="response_time"):
        Marker.from_json({**row, "response_time": "soon"})
