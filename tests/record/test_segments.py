"""A session in segments: their names, the next free one, and reading them back as one."""

from __future__ import annotations

import numpy as np
import pytest

from rt_recon.errors import DataError
from rt_recon.record.recording import RecordingShapes, RecordingWriter
from rt_recon.record.segments import SessionReader, next_segment, segment_path, session_segments

SHAPES = RecordingShapes(n_channels=50, z_shape=(4, 2, 2), c_shape=(3,), image_shape=(8, 8, 3))


def _segment(path, n_channels: int, first_stamp: float, n: int, tag: int) -> np.ndarray:
    """A segment of ``n`` volumes stamped from ``first_stamp``, each entry tagged ``tag``."""
    shapes = RecordingShapes(n_channels, SHAPES.z_shape, SHAPES.c_shape, SHAPES.image_shape)
    volumes = np.random.default_rng(tag).normal(size=(n, n_channels)).astype(np.float32)
    with RecordingWriter(path, shapes, attrs={"config": {"tag": tag}}) as rec:
        for i, v in enumerate(volumes):
            rec.add_volume(v, first_stamp + i)
            rec.add_latents({"tr": i, "tag": tag}, np.full((4, 2, 2), tag), np.zeros(3))
            rec.add_frame({"tr": i, "tag": tag}, np.full((8, 8, 3), tag, np.uint8))
        rec.add_marker({"stimulus_id": tag}, first_stamp + 0.5)
        rec.add_status({"node": "recorder", "tag": tag})
    return volumes


def test_segment_names_sit_beside_the_first_and_never_name_an_existing_file(tmp_path):
    first = tmp_path / "recording.h5"
    assert segment_path(first, 1) == first
    assert segment_path(first, 2) == tmp_path / "recording.seg-02.h5"
    assert segment_path(first, 123) == tmp_path / "recording.seg-123.h5"
    with pytest.raises(ValueError, match="start at 1, found 0"):
        segment_path(first, 0)
    assert next_segment(first) == (1, first)
    first.write_bytes(b"x")
    assert next_segment(first) == (2, tmp_path / "recording.seg-02.h5")
    segment_path(first, 2).write_bytes(b"x")
    (tmp_path / "recording.seg-2x.h5").write_bytes(b"x")  # not a segment name
    (tmp_path / "other.seg-07.h5").write_bytes(b"x")  # another session's
    assert next_segment(first) == (3, tmp_path / "recording.seg-03.h5")


def test_segments_are_listed_in_order_and_a_gap_or_a_missing_first_is_named(tmp_path):
    first = tmp_path / "rec.h5"
    with pytest.raises(DataError, match="recording not found"):
        session_segments(first)
    for n in (1, 2, 3, 10):
        segment_path(first, n).write_bytes(b"x")
    with pytest.raises(DataError, match=r"rec\.seg-04\.h5, .*rec\.seg-09\.h5 missing.*rec\.seg-10"):
        session_segments(first)
    for n in range(4, 10):
        segment_path(first, n).write_bytes(b"x")
    assert session_segments(first) == [segment_path(first, n) for n in range(1, 11)]


def test_the_session_reader_reads_segments_as_one_session(tmp_path):
    first = tmp_path / "recording.h5"
    a = _segment(first, 50, 100.0, 3, tag=1)
    b = _segment(segment_path(first, 2), 50, 110.0, 2, tag=2)
    c = _segment(segment_path(first, 3), 70, 120.0, 4, tag=3)  # another grid
    with SessionReader(first) as reader:
        assert reader.paths == [first, segment_path(first, 2), segment_path(first, 3)]
        volumes = reader.volumes()
        assert [v.shape for v, _ in volumes] == [(3, 50), (2, 50), (4, 70)]
        for (values, _), expected in zip(volumes, (a, b, c), strict=True):
            np.testing.assert_array_equal(values, expected)
        assert list(np.concatenate([s for _, s in volumes])) == [
            100.0, 101.0, 102.0, 110.0, 111.0, 120.0, 121.0, 122.0, 123.0
        ]  # fmt: skip
        headers, z, _ = reader.latents()
        assert [(h["tag"], h["tr"]) for h in headers] == [
            (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2), (3, 3)
        ]  # fmt: skip
        assert list(z[:, 0, 0, 0]) == [1, 1, 1, 2, 2, 3, 3, 3, 3]
        frame_headers, images = reader.frames()
        assert len(frame_headers) == 9 and list(images[:, 0, 0, 0]) == [1] * 3 + [2] * 2 + [3] * 4
        assert reader.markers() == [({"stimulus_id": t}, s) for t, s in ((1, 100.5), (2, 110.5),
                                                                          (3, 120.5))]  # fmt: skip
        assert [s["tag"] for s in reader.status()] == [1, 2, 3]
        assert reader.count("volumes") == 9 and reader.count("markers") == 3
        assert reader.attr("config") == {"tag": 1}  # the first segment's
