"""The hang-up → case benchmark's figures: a p99 only where there are enough samples to have one."""

from __future__ import annotations

from bench.hangup_to_case import summary


def test_a_summary_gives_count_median_p95_and_max_and_a_p99_only_from_100_samples() -> None:
    sixty = summary([float(value) for value in range(1, 61)])
    assert sixty == {"count": 60, "median": 30.5, "p95": 57.0, "max": 60.0}  # nearest rank: the 57th of 60
    hundred = summary([float(value) for value in range(1, 101)])
    assert hundred["p95"] == 95.0 and hundred["p99"] == 99.0 and hundred["count"] == 100
    assert summary([]) == {"count": 0}
