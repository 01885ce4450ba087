"""benchmarks/directory_bench.py with small counts, so it cannot rot unnoticed (no timing is asserted)."""

from __future__ import annotations

from benchmarks.directory_bench import measure


def test_the_directory_benchmark_produces_every_figure() -> None:
    figures = measure(200, repeats=1, lookups=2000)
    assert figures["apartments"] == 202  # and the default configuration's two
    for name in ("first_load_s", "load_median_s", "load_max_s", "lookup_found_ns", "lookup_missing_ns"):
        assert figures[name] > 0, name
