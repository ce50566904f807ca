"""``python -m benchmarks``: its report keeps hand-written docs and judges budgets correctly."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks.__main__ import BEGIN, END, SECTIONS, Section, Stage, markdown, write_docs


def test_the_generated_block_is_replaced_and_the_rest_of_the_page_kept(tmp_path):
    page = tmp_path / "performance.md"
    page.write_text("# Performance\n\nnotes before\n")
    write_docs(page, "first run")
    write_docs(page, "second run")
    text = page.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert "second run" in text and "first run" not in text
    assert text.startswith("# Performance\n\nnotes before\n")
    page.write_text(text + "\nnotes after\n")
    write_docs(page, "third run")
    assert page.read_text().endswith("notes after\n") and "third run" in page.read_text()


def test_a_stage_over_its_budget_is_marked_over_and_one_within_is_not():
    over = Stage("render", "300 ms", 300.0, budget_ms=250.0)
    within = Stage("decode", "1 ms", 1.0, "full rank: 40 ms", 40.0, 5.0)
    no_budget = Stage("bridge", "3 ms", 3.0)
    assert over.verdict == "**over**" and within.verdict == "within" and no_budget.verdict == "—"
    text = markdown([Section("x", "X", "cmd", "body", [over, within, no_budget])], ["bridge"], 60)
    assert "| render | 300 ms | — | — | ≤ 250 ms | **over** |" in text
    assert "| decode | 1 ms | full rank: 40 ms | 40.0x | ≤ 5 ms | within |" in text
    assert "Left out (no ../shared/data here): bridge." in text


def test_the_command_lists_every_section():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in SECTIONS:
        assert name in out


def test_the_decode_bench_builds_its_bundles_and_times_a_small_case():
    """Small enough for CI; it keeps the NSD-scale bench from rotting as bundles change."""
    from benchmarks import bench_decode

    result = bench_decode.run(300, ranks=(8,), repeats=3, full=True)
    names = [row.name for row in result["rows"]]
    assert names == ["full rank (baseline)", "low rank k=8 per head"]
    assert all(row.n >= 3 and row.median_ms > 0 for row in result["rows"])


def test_the_snap_cost_bench_times_each_bank():
    from benchmarks import bench_decode

    rows = bench_decode.snap_cost(repeats=3, cases=(("small", (4, 8), 50, 6),))
    assert [r.name for r in rows] == ["snap c: small"]
    assert rows[0].n == 3 and rows[0].median_ms > 0


def test_the_snap_bench_pairs_each_decoder_with_today_on_the_same_runs_and_seeds():
    import numpy as np

    from benchmarks.bench_snap import paired

    today = np.array([[0.80, 0.82], [0.90, 0.88], [0.70, 0.72]])  # [run, renderer seed]
    same_gain = paired(today + 0.05, today)
    assert same_gain["mean"] == pytest.approx(0.05)
    assert same_gain["ci_low"] == pytest.approx(0.05) == pytest.approx(same_gain["ci_high"])
    varied = paired(today + np.array([[0.0], [0.1], [0.05]]), today)
    assert varied["mean"] == pytest.approx(0.05) and varied["ci_low"] < 0.05 < varied["ci_high"]


def test_the_accuracy_bench_separates_the_spread_over_runs_from_that_over_seeds():
    import numpy as np

    from benchmarks.bench_accuracy import summarise

    grid = np.array([[0.6, 0.62, 0.64], [0.7, 0.72, 0.74], [0.8, 0.82, 0.84]])  # runs x seeds
    s = summarise(grid)
    assert s["mean"] == pytest.approx(0.72)
    assert s["sd_runs"] == pytest.approx(0.1)  # the runs' means 0.62, 0.72, 0.82
    assert s["sd_seeds"] == pytest.approx(0.02)  # the seeds' means 0.70, 0.72, 0.74
    half = 4.303 * 0.1 / np.sqrt(3)  # t(2) over the three runs, not over nine values
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((0.72 - half, 0.72 + half))
    assert (s["min"], s["max"]) == (0.6, 0.84)
