"""Soak: an accelerated 3,000-TR session loses no TR and the nodes' memory does not grow."""

from __future__ import annotations

import math

import pytest

from benchmarks.bench_soak import soak
from rt_recon.apps.pipeline import pipeline_overrides
from rt_recon.record.recording import RecordingReader
from tests.conftest import free_port

pytestmark = pytest.mark.slow

#: RSS a node may gain over the second half of the run (MiB): a leak of even one volume
#: (15 KB) or one latents message per TR would add 20+ MiB over those 1,500 TRs.
MAX_GROWTH_MIB = 10.0


def test_3000_trs_fast_replay_lose_nothing_and_memory_stays_flat(
    node_config, small_dataset, tmp_path
):
    config = node_config.with_overrides(
        {
            **pipeline_overrides(asap=True, frame_paced=False),
            "recorder.status_endpoint": f"tcp://127.0.0.1:{free_port()}",
            "renderer.write_png": False,
        }
    )
    config_path = tmp_path / "session.json"
    config_path.write_text(config.to_json())
    run = small_dataset.runs("test")[0]
    loops = math.ceil(3000 / run.n_trs)
    result = soak(config, config_path, run, loops, sample_s=0.25)

    assert result.n_trs >= 3000
    assert result.decoded_trs == list(range(result.n_trs))  # every TR, once, in order
    assert all(h["missed_before"] == 0 for h in result.pipeline.latents)
    assert result.pipeline.frames[-1].header["tr"] == result.n_trs - 1
    with RecordingReader(config.recording_path) as reader:
        values, _ = reader.volumes()
    assert len(values) == result.n_trs
    print(f"\n{result.n_trs} TRs in {result.seconds:.0f} s\n{result.memory.table()}")
    for name in ("decoder", "renderer", "recorder"):
        assert len(result.memory.samples[name]) >= 20, f"too few RSS samples of {name}"
        assert result.memory.growth_mib(name) < MAX_GROWTH_MIB, result.memory.table()
