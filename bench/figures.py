"""What every benchmark reports, one way: latency summaries, whole-process memory, isolation.

* ``summary``: count, median, p95, p99 and max of a list of samples, every percentile by the
  nearest-rank method (stated in ``PERCENTILE_METHOD`` and written into every results file). A p99
  is given only from ``P99_MIN_SAMPLES`` samples: the 29th of 30 values is the second largest, not a
  percentile.
* ``peak_memory``: the whole process's peak resident memory (``VmHWM``, what the kernel counted,
  not what tracemalloc saw of Python's allocations) and the largest finished child's.
* ``isolate_from_environment``: a benchmark's own settings must not lose to the environment
  (``CUNXIANG_*`` variables override what a ``Settings(...)`` is given: with ``CUNXIANG_DATA_DIR``
  set, a "cold" render once read the previous run's cache). Every benchmark removes them first.
* ``offline_speech``: benchmarks use the offline engine (espeak-ng) only; nothing leaves the machine.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import sys
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any

from settings import ENV_PREFIX, TtsSettings

PERCENTILE_METHOD = "nearest rank: the smallest sample with at least p % of all samples at or below it"
P99_MIN_SAMPLES = 100


def nearest_rank(ordered: list[float], share: float) -> float:
    """The nearest-rank percentile of sorted samples: the ``ceil(share × n)``-th smallest."""
    if not ordered:
        raise ValueError("no samples")
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def summary(values: Iterable[float], *, digits: int = 1) -> dict[str, float | int]:
    """count, median, p95, p99 (only from 100 samples) and max, rounded to ``digits`` decimals.

    The unit is the samples' own (the benchmarks pass milliseconds).
    """
    ordered = sorted(values)
    figures: dict[str, float | int] = {"count": len(ordered)}
    if not ordered:
        return figures
    figures["median"] = round(statistics.median(ordered), digits)
    figures["p95"] = round(nearest_rank(ordered, 0.95), digits)
    if len(ordered) >= P99_MIN_SAMPLES:
        figures["p99"] = round(nearest_rank(ordered, 0.99), digits)
    figures["max"] = round(ordered[-1], digits)
    return figures


def describe(figures: dict[str, float | int], unit: str = "ms") -> str:
    """``count 30, median 12.0, p95 15.0, max 17.0 ms``: a summary as one line (no p99 unless it has one)."""
    parts = [f"{key} {value:g}" for key, value in figures.items()]
    return ", ".join(parts) + (f" {unit}" if len(figures) > 1 else "")


def _status_kib(field: str, pid: int | str = "self") -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_memory() -> dict[str, float]:
    """Whole-process peak RSS in MiB: this process (VmHWM), and the largest child it waited for.

    ``ru_maxrss`` of the children counts a forked child's pages until it execs (a child forked
    from a 300 MiB Python shows 300 MiB): read it as an upper bound on what the children used.
    """
    own_kib = _status_kib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"peak_rss_mib": round(own_kib / 1024, 1), "peak_rss_children_mib": round(children_kib / 1024, 1)}


def isolate_from_environment(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Remove every ``CUNXIANG_*`` variable (they override a benchmark's settings); return their names.

    Said on stderr, so that a run on a configured machine shows what it ignored.
    """
    environment = os.environ if environ is None else environ
    removed = sorted(name for name in environment if name.upper().startswith(ENV_PREFIX))
    for name in removed:
        del environment[name]
    if removed:
        print(f"benchmark: ignoring {', '.join(removed)} (a benchmark sets its own)", file=sys.stderr)
    return removed


def offline_speech() -> TtsSettings:
    """The offline engine only: a benchmark never reaches the online one unless told."""
    return TtsSettings(engines=("espeak",))


def write_results(path: Path | None, results: dict[str, Any]) -> None:
    """Write a benchmark's figures (with its peak memory) as JSON, for ``python -m bench``."""
    if path is None:
        return
    figures = results if "peak_rss_mib" in results else {**results, "memory": peak_memory()}
    path.write_text(json.dumps(figures, indent=2, ensure_ascii=False, default=str))
