"""The calibration table of ``benchmarks.bench_confidence``: equal quintiles by confidence
(ties at 1 ranked by the statistic), their identification, and the rank correlation."""

from __future__ import annotations

import itertools

import numpy as np

from benchmarks.bench_confidence import calibration, nsd_cost, table


def test_quintiles_are_equal_and_follow_identification_when_it_follows_confidence():
    rng = np.random.default_rng(0)
    statistic = rng.gamma(2.0, size=100)
    confidence = np.minimum(statistic / 2.5, 1.0)  # a quarter or so tied at 1
    assert np.sum(confidence == 1.0) > 20
    identification = np.clip(0.5 + 0.1 * statistic + rng.normal(0, 0.05, 100), 0, 1)
    result = calibration(confidence, statistic, identification)
    rows = result["rows"]
    assert [r["n"] for r in rows] == [20] * 5
    assert all(a["statistic_to"] <= b["statistic_from"] for a, b in itertools.pairwise(rows))
    ident = [r["identification"] for r in rows]
    assert ident == sorted(ident) and all(r["ci_low"] <= r["identification"] <= r["ci_high"]
                                          for r in rows)  # fmt: skip
    assert result["spearman"]["rho"] > 0.5 and result["spearman"]["p"] < 1e-6
    assert result["overall"]["identification"] == identification.mean()
    text = table(result)
    assert text.count("\n| ") == 6 and "Spearman's rho" in text  # 5 quintiles and the total


def test_unrelated_identification_gives_a_rank_correlation_near_zero():
    rng = np.random.default_rng(1)
    statistic = rng.gamma(2.0, size=200)
    result = calibration(np.minimum(statistic / 4, 1), statistic, rng.uniform(size=200))
    s = result["spearman"]
    assert s["ci_low"] < 0 < s["ci_high"] and s["p"] > 0.01


def test_the_nsd_scale_cost_is_timed():
    timing = nsd_cost(repeats=5, n_null=100)
    assert timing.n == 5 and 0 < timing.median_ms < 50
