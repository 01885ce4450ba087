"""Visit history: every visit in SQLite under ``state_dir``, from its start, kept across restarts and crashes.

A visit is written when it starts (:meth:`History.begin`, outcome ``in_progress``) and completed when it ends
(:meth:`History.record`, the same row by visit id). Rows a killed daemon left ``in_progress`` become
``interrupted`` at the next start. Neither call waits for the database: they hand the record to the history's
own writer thread (the only thread that touches SQLite), which writes with a short busy timeout and retries
while another process holds the lock. Shutdown waits at most ``close_timeout``; what could not be written by
then goes to a spool file beside the database and is written at the next start. A damaged database is moved
aside (``<name>.corrupt-<UTC time>``) and a new one made; a file deleted or replaced while running is noticed
(its device and inode) and its rows carried into the new file. :meth:`History.health` says how it is going.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import anyio

from daemon.history import _sqlite
from daemon.history._record import (
    IN_PROGRESS,
    INTERRUPTED,
    INTERRUPTED_DETAIL,
    OUTCOMES,
    SCHEMA_VERSION,
    StorageHealth,
    StorageOutcome,
    VisitRecord,
)
from daemon.history._writer import Writer

log = logging.getLogger(__name__)

__all__ = [
    "INTERRUPTED",
    "INTERRUPTED_DETAIL",
    "IN_PROGRESS",
    "OUTCOMES",
    "SCHEMA_VERSION",
    "History",
    "StorageHealth",
    "StorageOutcome",
    "VisitHistory",
    "VisitRecord",
]


class History:
    """The visit history database at ``path``. ``connect`` is for tests (injected, not patched)."""

    def __init__(
        self,
        path: Path | str,
        *,
        backlog_limit: int = 1000,
        connect: _sqlite.Connect = _sqlite.connect,
        open_timeout: float = 1.0,
        close_timeout: float = 1.0,
        read_timeout: float = 5.0,
        check_interval: float = 5.0,
    ) -> None:
        self.path = Path(path)
        self._open_timeout = open_timeout
        self._close_timeout = close_timeout
        self._read_timeout = read_timeout
        self._writer = Writer(self.path, connect=connect, backlog_limit=backlog_limit, check_interval=check_interval)
        self._closed = False

    @classmethod
    def in_state_dir(cls, state_dir: Path | str, **kwargs: Any) -> History:
        return cls(Path(state_dir) / "history.sqlite3", **kwargs)

    @property
    def spool_path(self) -> Path:
        return self._writer.spool

    @property
    def backlog_size(self) -> int:
        """Records handed over and not yet committed (or spooled)."""
        return self._writer.backlog_size

    @property
    def dropped(self) -> int:
        """Records neither written nor spooled (database and spool both unwritable); each one is logged."""
        return self._writer.dropped

    @property
    def last_error(self) -> str:
        return self._writer.last_error

    async def __aenter__(self) -> History:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def open(self) -> bool:
        """Start the writer: open (create, migrate, or replace a damaged) database, replay the spool, mark the
        previous run's unfinished visits interrupted. Waits at most ``open_timeout``; False if the database is
        not usable yet (the writer keeps trying; records wait)."""
        self._writer.start()
        try:
            return bool(await self._ask(self._writer.write, self._open_timeout))
        except TimeoutError:
            return False

    def begin(self, record: VisitRecord) -> None:
        """Record a visit as started (outcome ``in_progress``, whatever ``record.outcome`` says). Never blocks.

        Call it again with more fields (who answered, the door opened) to update the row while the visit runs,
        so that a crash leaves the most recent picture behind.
        """
        if not record.in_progress:
            record = dataclasses.replace(record, outcome=IN_PROGRESS)
        self._put(record)

    def note(self, record: VisitRecord) -> None:
        """Record something that was over as it happened (a door opened by a PIN, the exit button, a command):
        one finished row. Never blocks."""
        self._put(record)

    async def record(self, record: VisitRecord) -> None:
        """Complete the visit's row with its final outcome. Returns at once: it does not wait for the database."""
        self._put(record)

    def _put(self, record: VisitRecord) -> None:
        if self._closed:  # a wiring bug; the visit path must not raise for it
            self._writer.dropped += 1
            log.error("history %s: visit %s handed over after close: not recorded", self.path, record.visit)
            return
        self._writer.start()
        self._writer.put(record)

    async def flush(self, timeout: float = 10.0) -> bool:  # noqa: ASYNC109  (answers a bool rather than raising)
        """Wait until every record handed over is in the database; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        self._writer.start()
        while True:
            remaining = deadline - time.monotonic()
            try:
                if await self._ask(self._writer.write, max(remaining, 0.0)):
                    return True
            except TimeoutError:
                return False
            if remaining <= 0:
                return False
            await anyio.sleep(min(0.05, remaining))

    async def recent(self, limit: int = 20) -> list[VisitRecord]:
        """The newest ``limit`` visits, newest first, including those not yet written."""
        self._writer.start()
        try:
            result: list[VisitRecord] = await self._ask(lambda: self._writer.recent(limit), self._read_timeout)
        except TimeoutError:
            log.warning("history %s: no answer within %g s; nothing to show", self.path, self._read_timeout)
            return []
        return result

    def health(self) -> StorageHealth:
        """The latest known state, without waiting (for ``status``)."""
        return self._writer.health

    async def check(self) -> StorageHealth:
        """Check now (for ``selftest``): the file is still the one opened, it passes ``quick_check``, and the
        backlog is retried. A timeout answers not ok."""
        self._writer.start()
        try:
            result: StorageHealth = await self._ask(self._writer.check, self._read_timeout)
        except TimeoutError:
            return StorageHealth(False, f"{self.path}: no answer from the database within {self._read_timeout:g} s")
        return result

    async def run(self, interval: float = 3600.0) -> None:
        """For the app's task group: an integrity check every ``interval`` (``quick_check`` reads the whole
        file, hence hourly; the writer checks the file's identity every few seconds on its own)."""
        while True:
            await anyio.sleep(interval)
            await self.check()

    async def aclose(self) -> None:
        """Stop the writer within ``close_timeout`` (plus a little): what is not written by then is spooled."""
        if self._closed:
            return
        self._closed = True
        if not self._writer.started:
            return
        self._writer.stop(time.monotonic() + self._close_timeout)
        with anyio.CancelScope(shield=True):
            done = await anyio.to_thread.run_sync(self._writer.join, self._close_timeout + 0.2, abandon_on_cancel=True)
            if not done:
                with anyio.move_on_after(0.3):
                    await anyio.to_thread.run_sync(self._writer.abandon, abandon_on_cancel=True)

    async def _ask(self, fn: Any, timeout: float) -> Any:  # noqa: ASYNC109
        """Run ``fn`` on the writer thread and wait for its answer (in a worker thread, so the loop never blocks)."""
        if self._closed:
            raise TimeoutError("history is closed")  # the writer answers nothing after its stop
        future = self._writer.call(fn)
        try:
            return await anyio.to_thread.run_sync(future.result, timeout, abandon_on_cancel=True)
        except TimeoutError:
            future.cancel()
            raise


VisitHistory = History  # the name this class had before
