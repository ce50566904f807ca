"""TR indices: from the volume's acquisition index (IndexedTrCounter) or, for a stream
without one, from LSL timestamps (TrCounter); gaps are counted, duplicated and
out-of-order volumes are never assigned a TR."""

from __future__ import annotations

import pytest

from rt_recon.decode.tr_counter import IndexedTrCounter, TrCounter, TrStep
from rt_recon.errors import StreamError

INTERVAL = 0.125  # TR 1 s replayed at 8x
T0 = 5000.0


def _feed(counter: TrCounter, stamps: list[float]) -> list[TrStep]:
    return [counter.update(t) for t in stamps]


def test_regular_volumes_count_up_from_zero_with_jitter():
    jitter = [0.0, 0.004, -0.003, 0.002, -0.004, 0.001]
    steps = _feed(TrCounter(INTERVAL), [T0 + i * INTERVAL + j for i, j in enumerate(jitter)])
    assert [s.tr for s in steps] == [0, 1, 2, 3, 4, 5]
    assert all(s.missed == 0 and s.rejected is None for s in steps)


def test_a_gap_of_k_intervals_advances_by_k_and_flags_the_missing_ones():
    steps = _feed(TrCounter(INTERVAL), [T0 + i * INTERVAL for i in (0, 1, 4, 5, 9)])
    assert [(s.tr, s.missed) for s in steps] == [(0, 0), (1, 0), (4, 2), (5, 0), (9, 3)]


def test_an_asap_stream_counts_every_new_volume_as_the_next_tr_whatever_the_gap():
    stamps = [T0 + i * INTERVAL for i in (0, 1, 4, 5, 9)]  # the consumer stalled twice
    crcs = list(range(len(stamps)))
    counter = TrCounter(INTERVAL, sequential=True)
    steps = [counter.update(t, crc) for t, crc in zip(stamps, crcs, strict=True)]
    assert [(s.tr, s.missed) for s in steps] == [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)]
    assert counter.update(stamps[-1], crcs[-1]).rejected == "duplicate"  # still caught
    assert counter.update(stamps[-1] - 1.0, 99).rejected == "out_of_order"


def test_a_duplicated_volume_is_skipped_and_does_not_move_the_count():
    counter = TrCounter(INTERVAL)
    stamps = [T0, T0 + INTERVAL, T0 + INTERVAL, T0 + INTERVAL + 0.01, T0 + 2 * INTERVAL]
    steps = _feed(counter, stamps)
    assert [s.tr for s in steps] == [0, 1, None, None, 2]
    assert [s.rejected for s in steps] == [None, None, "duplicate", "duplicate", None]
    assert steps[3].dt == pytest.approx(0.01)
    assert steps[4].missed == 0  # the duplicates were not counted as TRs, nor as missing


def test_a_slightly_earlier_copy_is_a_duplicate_not_out_of_order():
    steps = _feed(TrCounter(INTERVAL), [T0, T0 + INTERVAL, T0 + INTERVAL - 0.002])
    assert steps[2].tr is None and steps[2].rejected == "duplicate"


def test_an_out_of_order_volume_is_skipped_and_its_tr_stays_missing():
    # Volumes 0, 1, 3, 2, 4: volume 2 arrives after volume 3.
    steps = _feed(TrCounter(INTERVAL), [T0 + i * INTERVAL for i in (0, 1, 3, 2, 4)])
    assert [s.tr for s in steps] == [0, 1, 3, None, 4]
    assert steps[2].missed == 1  # TR 2 flagged missing when TR 3 came
    assert steps[3].rejected == "out_of_order" and steps[3].dt == pytest.approx(-INTERVAL)
    assert steps[4].missed == 0


def test_an_old_volume_sent_again_is_out_of_order_and_never_the_next_tr():
    stamps = [T0 + i * INTERVAL for i in (0, 1, 2, 3)] + [T0, T0 + 4 * INTERVAL]
    steps = _feed(TrCounter(INTERVAL), stamps)
    assert [s.tr for s in steps] == [0, 1, 2, 3, None, 4]
    assert steps[4].rejected == "out_of_order"


def test_the_duplicate_window_is_configurable():
    counter = TrCounter(INTERVAL, duplicate_below=0.25)
    steps = _feed(counter, [T0, T0 + 0.3 * INTERVAL, T0 + 0.2 * INTERVAL, T0])
    assert [s.tr for s in steps] == [0, 1, None, None]  # 0.3 intervals on: the next TR
    assert steps[2].rejected == "duplicate"  # 0.1 intervals before TR 1: within the window
    assert steps[3].rejected == "out_of_order"  # 0.3 intervals before TR 1: beyond it


@pytest.mark.parametrize(("interval", "window"), [(0.0, 0.5), (-1.0, 0.5), (1.0, 0.0), (1.0, 0.6)])
def test_refuses_a_counter_that_could_not_tell_volumes_apart(interval, window):
    with pytest.raises(StreamError, match="TrCounter needs a sample interval > 0 s"):
        TrCounter(interval, duplicate_below=window)


def test_with_crcs_a_duplicate_is_the_same_data_again():
    counter = TrCounter(INTERVAL)
    assert counter.update(T0, crc=11).tr == 0
    again = counter.update(T0 + 0.001, crc=11)
    assert again.tr is None and again.rejected == "duplicate"
    # Other data stamped just after (an asap replay stamps volumes with their push time):
    # the next TR, as before duplicates were looked for.
    assert counter.update(T0 + 0.01, crc=12) == TrStep(1, dt=pytest.approx(0.01))
    assert counter.update(T0 + 0.02, crc=13).tr == 2
    # Other data stamped just before the last one: never the next TR.
    earlier = counter.update(T0 + 0.015, crc=14)
    assert earlier.tr is None and earlier.rejected == "out_of_order"
    assert counter.update(T0 + 0.02 + INTERVAL, crc=15) == TrStep(3, dt=pytest.approx(INTERVAL))


def test_the_acquisition_index_is_the_tr_and_a_late_start_flags_the_volumes_before_it():
    counter = IndexedTrCounter()
    steps = [counter.update(i) for i in (4, 5, 8, 9)]
    assert [(s.tr, s.missed) for s in steps] == [(4, 4), (5, 0), (8, 2), (9, 0)]
    assert counter.update(9).rejected == "duplicate"
    assert counter.update(6).rejected == "out_of_order"
    assert counter.last == 9  # neither moved the count
    with pytest.raises(StreamError, match="found -1"):
        counter.update(-1)


def test_an_indexed_run_from_its_first_volume_misses_nothing():
    counter = IndexedTrCounter()
    assert [(s.tr, s.missed) for s in map(counter.update, range(5))] == [(i, 0) for i in range(5)]
