"""One blocking audio job in an anyio worker thread, stoppable from the loop without waiting for nothing.

Why a handshake and not just two events: a job cancelled while it still waits for its limiter never reaches a
worker thread, so nobody would ever set its ``done``; waiting for it anyway held the speaker for the whole grace
period (2 s: a resident's first words in talk mode were lost behind a prompt cancelled before it began). The worker
claims the job under a lock (:meth:`WorkerJob.begin`); :meth:`WorkerJob.cancel` waits only for a job that began.
"""

from __future__ import annotations

import threading

import anyio
import anyio.to_thread

__all__ = ["STOP_GRACE_S", "WorkerJob"]

# How long a stopped job's worker gets to notice the stop flag and let go of the device (one buffer is ~5-50 ms).
STOP_GRACE_S = 2.0


class WorkerJob:
    """The stop and done flags of one job, shared by the loop and the worker thread running it."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._began = False

    def begin(self) -> bool:
        """Worker, first thing: False if the job was stopped before it began (do nothing then, but :meth:`end`)."""
        with self._lock:
            self._began = not self.stop.is_set()
            return self._began

    def end(self) -> None:
        """Worker, last thing (in a ``finally``): the device is let go of."""
        self.done.set()

    @property
    def finished(self) -> bool:
        """True once the worker let go of the device, or when no worker ever began the job."""
        with self._lock:
            return self.done.is_set() or (self.stop.is_set() and not self._began)

    async def cancel(self) -> bool:
        """Stop the job and wait, shielded and at most :data:`STOP_GRACE_S`, for a worker that began it to let go.
        Returns whether it did (False: the worker is stuck in the device)."""
        with self._lock:
            self.stop.set()
            began = self._began
        if not began:
            return True
        with anyio.CancelScope(shield=True):
            let_go = await anyio.to_thread.run_sync(self.done.wait, STOP_GRACE_S)
        return let_go
