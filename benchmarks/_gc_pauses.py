"""The garbage collections of the measured process while its figures run: how many, how long the longest held the GIL.

A collection stops every thread of the process (it holds the GIL); under the CPU quota its wall time stretches with
the periods it spans. ``gc.callbacks`` see each collection start and stop on the thread that runs it: the wall
time between the two is the pause. Installed around the presses by :mod:`benchmarks.app_bench`.
"""

from __future__ import annotations

import gc
import time
from typing import Any

__all__ = ["GcPauses"]


class GcPauses:
    """Records each collection's generation and wall milliseconds from :meth:`start` until :meth:`stop`."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []  # (generation, wall ms)
        self._began = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.pauses.append((int(info["generation"]), (time.perf_counter() - self._began) * 1000))

    def start(self) -> None:
        gc.callbacks.append(self._callback)

    def stop(self) -> dict[str, Any]:
        """Stop recording; returns the summary a report reads (JSON-ready)."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
        full = [ms for gen, ms in self.pauses if gen == 2]
        return {
            "collections": len(self.pauses),
            "full": len(full),
            "longest_ms": max((ms for _, ms in self.pauses), default=0.0),
            "longest_full_ms": max(full, default=0.0),
            "total_ms": sum(ms for _, ms in self.pauses),
        }
