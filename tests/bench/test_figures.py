"""The benchmarks' figures cannot fool anyone: one percentile method, a p99 only from 100 samples,
isolation from the environment, and one command whose results file says whether a run counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import bench.__main__ as runner
from bench.figures import PERCENTILE_METHOD, isolate_from_environment, nearest_rank, offline_speech, summary


def test_a_summary_gives_count_median_p95_and_max_and_a_p99_only_from_100_samples() -> None:
    sixty = summary([float(value) for value in range(1, 61)])
    assert sixty == {"count": 60, "median": 30.5, "p95": 57.0, "max": 60.0}  # nearest rank: the 57th of 60
    hundred = summary([float(value) for value in range(1, 101)])
    assert hundred["p95"] == 95.0 and hundred["p99"] == 99.0 and hundred["count"] == 100
    assert summary([]) == {"count": 0}


def test_thirty_samples_have_no_p99_and_their_p95_is_the_29th_not_an_interpolation() -> None:
    thirty = summary([float(value) for value in range(30, 0, -1)])  # order does not matter
    assert "p99" not in thirty
    assert thirty["p95"] == 29.0 and thirty["max"] == 30.0 and thirty["median"] == 15.5


def test_nearest_rank_is_the_stated_method() -> None:
    ordered = [1.0, 2.0, 3.0, 4.0]
    assert [nearest_rank(ordered, share) for share in (0.25, 0.26, 0.5, 0.99, 1.0)] == [1.0, 2.0, 2.0, 4.0, 4.0]
    assert "nearest rank" in PERCENTILE_METHOD
    with pytest.raises(ValueError):
        nearest_rank([], 0.5)


def test_summary_rounds_to_the_digits_asked() -> None:
    assert summary([0.123456, 0.2], digits=3) == {"count": 2, "median": 0.162, "p95": 0.2, "max": 0.2}


def test_isolation_removes_every_cunxiang_variable_and_keeps_the_rest() -> None:
    environ = {"CUNXIANG_DATA_DIR": "/srv/cx", "cunxiang_tts_engines": "edge", "PATH": "/usr/bin", "HOME": "/root"}
    assert isolate_from_environment(environ) == ["CUNXIANG_DATA_DIR", "cunxiang_tts_engines"]
    assert environ == {"PATH": "/usr/bin", "HOME": "/root"}


def test_after_isolation_a_benchmarks_own_settings_win(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from settings import Settings

    monkeypatch.setenv("CUNXIANG_DATA_DIR", str(tmp_path / "the-service's-data"))
    monkeypatch.setenv("CUNXIANG_TTS_ENGINES", "edge,espeak")
    # Without isolation the environment wins over what the benchmark gives (that is how a "cold" run
    # once read the previous run's cache).
    assert Settings(data_dir=tmp_path / "bench").data_dir == tmp_path / "the-service's-data"
    isolate_from_environment()
    settings = Settings(data_dir=tmp_path / "bench", tts=offline_speech())
    assert settings.data_dir == tmp_path / "bench"
    assert settings.tts.engines == ("espeak",)


def _figures_run(load_before: float, exit_status: int = 0) -> dict[str, Any]:
    return {
        "hangup_to_case": {
            "what": "hang-up → case",
            "arguments": ["--quick"],
            "seconds": 12.0,
            "exit_status": exit_status,
            "figures": {
                database: {
                    "case_visible_ms": {"count": 100, "median": 120.0, "p95": 250.0, "p99": 400.0, "max": 900.0},
                    "recording_attached_ms": {"count": 100, "median": 300.0, "p95": 700.0, "p99": 800.0, "max": 950.0},
                    "memory": {"peak_rss_mib": 140.2, "peak_rss_children_mib": 30.0},
                }
                for database in ("sqlite", "postgresql")
            },
        }
    }


@pytest.mark.parametrize(("load_before", "valid"), [(0.3, True), (0.51, False)])
def test_a_run_starting_above_load_half_is_written_but_marked_not_valid(
    monkeypatch: pytest.MonkeyPatch, load_before: float, valid: bool
) -> None:
    loads = iter([load_before, 2.0])
    monkeypatch.setattr(runner, "load_average", lambda: next(loads))
    monkeypatch.setattr(runner, "run_one", lambda benchmark, quick: _figures_run(0.0)["hangup_to_case"])
    results = runner.run(["hangup_to_case"], quick=False)
    assert results["valid"] is valid
    assert results["load_average_before"] == load_before and results["load_average_after"] == 2.0
    assert results["percentile_method"] == PERCENTILE_METHOD
    assert [(goal["goal"], goal["met"]) for goal in results["goals"]] == [
        ("SQLite: case visible p95 < 300 ms", True),
        ("SQLite: recording attached p95 < 500 ms", False),
        ("PostgreSQL: case visible p95 < 300 ms", True),
        ("PostgreSQL: recording attached p95 < 500 ms", False),
    ]
    json.dumps(results)  # the whole run is one JSON document


def test_a_failed_or_quick_run_is_not_valid_either(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "load_average", lambda: 0.1)
    monkeypatch.setattr(runner, "run_one", lambda benchmark, quick: _figures_run(0.1, 1)["hangup_to_case"])
    results = runner.run(["hangup_to_case"], quick=True)
    assert results["valid"] is False
    assert any("failed" in reason for reason in results["not_valid_because"])
    assert any("--quick" in reason for reason in results["not_valid_because"])


def test_the_tables_show_every_figure_of_the_results_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "load_average", lambda: 0.2)
    monkeypatch.setattr(runner, "run_one", lambda benchmark, quick: _figures_run(0.2)["hangup_to_case"])
    text = runner.tables(runner.run(["hangup_to_case"], quick=False), "bench/results/x.json")
    assert "| SQLite: case visible p95 < 300 ms | 250.0 | met |" in text
    assert "| PostgreSQL: recording attached p95 < 500 ms | 700.0 | **not met** |" in text
    assert "| postgresql › case_visible_ms | count 100 / median 120.0 / p95 250.0 / p99 400.0 / max 900.0 |" in text
    assert "| sqlite › memory › peak_rss_mib | 140.2 |" in text
    assert "**valid**" in text and "load average 0.2 before, 0.2 after" in text


def test_goals_name_figures_in_lists_by_their_query() -> None:
    figures = {"sqlite": {"queries": [{"query": "催办 list (by unit)", "p95_ms": 42.0}]}}
    assert runner.lookup(figures, ("sqlite", "queries", "催办", "p95_ms")) == 42.0
    assert runner.lookup(figures, ("postgresql", "queries", "催办", "p95_ms")) is None


def test_the_readme_has_the_marks_the_tables_go_between() -> None:
    text = runner.README.read_text(encoding="utf-8")
    updated = runner.update_readme(text, "| generated |")
    assert updated.count(runner.BEGIN_MARK) == 1 and "| generated |" in updated
    assert runner.update_readme(updated, "| again |").count("| generated |") == 0


def test_every_benchmark_of_the_command_takes_quick_and_json() -> None:
    import importlib

    for benchmark in runner.BENCHMARKS:
        module = importlib.import_module(benchmark.module)
        source = Path(module.__file__ or "").read_text(encoding="utf-8")
        assert '"--json"' in source and "isolate_from_environment()" in source, benchmark.module


@pytest.mark.slow  # two real renders (espeak-ng, ffmpeg): seconds, the smallest the benchmark takes
def test_a_render_benchmark_run_with_cunxiang_data_dir_set_still_renders_cold_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tempfile

    from bench import render

    service_data = tmp_path / "service-data"
    monkeypatch.setenv("CUNXIANG_DATA_DIR", str(service_data))
    monkeypatch.setenv("CUNXIANG_TTS_ENGINES", "edge,espeak")  # the online engine first: must not be used
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    for run in ("first", "second"):  # the second would find the first's cache if the environment won
        out = tmp_path / f"{run}.json"
        # One sample notice cut to 30 characters, one round, one render at a time: the smallest run with
        # a cold render in it.
        smallest = ["--generated", "0", "--samples", "1", "--max-chars", "30", "--rounds", "1", "--jobs", "1"]
        render.main([*smallest, "--json", str(out)])
        figures = json.loads(out.read_text())
        assert figures["b_production"]["cold_renders"] == 1
        assert figures["b_production"]["ours_cold_s"] > 0.05 and figures["c_throughput"]["cold_audio_s_per_s"] < 1000
        assert figures["memory"]["peak_rss_mib"] > 0
        monkeypatch.setenv("CUNXIANG_DATA_DIR", str(service_data))
    assert not service_data.exists()
    assert list(scratch.iterdir()) == []  # the benchmark's temporary folders are gone
