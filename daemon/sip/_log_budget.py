"""A log budget: at most so many lines per window, the rest counted and reported in one line once the
window is over. For lines anyone on the network can cause (malformed packets, unwanted callers), so that a
flood cannot fill the journal. Thread-safe: pjsip's log writer calls it from pjsip's threads."""

from __future__ import annotations

import logging
import threading

__all__ = ["LogBudget"]


class LogBudget:
    def __init__(self, logger: logging.Logger, what: str, budget: int, window: float) -> None:
        self._log = logger
        self._what = what  # how the summary names the dropped lines
        self._budget = budget
        self._window = window
        self._lock = threading.Lock()
        self._window_start = -float("inf")
        self._passed = 0
        self.suppressed = 0  # lines dropped in the current window
        self.suppressed_total = 0

    def log(self, now: float, level: int, message: str, *args: object) -> None:
        if not self._log.isEnabledFor(level):
            return  # nothing formatted for a line nobody keeps, and it spends no budget
        with self._lock:
            self._roll(now)
            if self._passed >= self._budget:
                self.suppressed += 1
                self.suppressed_total += 1
                return
            self._passed += 1
        self._log.log(level, message, *args)

    def flush(self, now: float) -> None:
        """Report the lines dropped in a window that is over (call it now and then, e.g. every turn)."""
        with self._lock:
            self._roll(now)

    def _roll(self, now: float) -> None:  # under the lock
        if now - self._window_start < self._window:
            return
        if self.suppressed:
            self._log.warning("%d more %s in %.0f s were not logged", self.suppressed, self._what, self._window)
        self._window_start = now
        self._passed = 0
        self.suppressed = 0
