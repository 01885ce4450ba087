"""Benchmarks: latency, footprint and stability figures, with the replaced design as a baseline.

``python -m benchmarks`` runs every figure and writes ``docs/benchmarks.md`` and ``docs/img/*.png``.
pjsua2 allows one Endpoint per process, so each side that needs one (ours, the baseline, the far end)
runs in its own subprocess (``python -m benchmarks.<module>``) that prints one JSON object on stdout.
No figure ever fails the run on its number: a target missed is reported, not raised.
"""
