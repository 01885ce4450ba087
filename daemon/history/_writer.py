"""The history's writer thread: the only thread that touches the SQLite connection.

The loop hands it records (:meth:`Writer.put`, which never blocks) and questions (:meth:`Writer.call`, answered
through a ``concurrent.futures.Future``). Records wait in ``pending`` until a write commits; a write that meets
another process's lock fails after the short busy timeout and is retried with a growing delay, so the loop
never waits on the database. At stop the writer tries until a deadline and spools what is left.
"""

from __future__ import annotations

import logging
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.history import _sqlite as sql
from daemon.history._record import StorageHealth, VisitRecord
from daemon.history._spool import append_spool, read_spool, spool_path

__all__ = ["Writer"]

log = logging.getLogger("daemon.history")

_RETRY_FIRST, _RETRY_MAX = 0.05, 2.0  # seconds between attempts while the database refuses
_MOVE_ASIDE_HOLDOFF = 60.0  # seconds
_LOCK_ERRORS = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED"})  # the connection is fine: keep it
# A record waits this long for the ones that follow it before the commit (write-behind). The visit's first row is
# handed over as the visit starts, in the same milliseconds as its INVITE: on a Pi-sized CPU (a CPU quota, issue
# 18) a commit there took the CPU the INVITE needed. Waiting also puts a visit's first rows in one transaction
# (fewer fsyncs on an SD card). A question (flush, recent, check) or the stop ends the wait at once.
WRITE_BEHIND_S = 0.2


@dataclass(frozen=True)
class _Put:
    record: VisitRecord


@dataclass(frozen=True)
class _Call:
    fn: Callable[[], Any]
    future: Future[Any]


@dataclass(frozen=True)
class _Stop:
    deadline: float  # time.monotonic()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Writer:
    def __init__(self, path: Path, *, connect: sql.Connect, backlog_limit: int, check_interval: float) -> None:
        self.path = path
        self.spool = spool_path(path)
        self._connect = connect
        self._backlog_limit = backlog_limit
        self._check_interval = check_interval
        self._jobs: queue.SimpleQueue[_Put | _Call | _Stop] = queue.SimpleQueue()
        self._lock = threading.Lock()  # pending and the spool, shared with abandon() at a stuck shutdown
        self._pending: dict[str, VisitRecord] = {}  # not yet committed, oldest first
        self._count_lock = threading.Lock()  # never held across I/O: put() takes it on the loop thread
        self._queued = 0  # put() but not yet taken into pending
        self._salvaged: list[VisitRecord] = []  # rows read from a file deleted or replaced under us
        self._db: sqlite3.Connection | None = None
        self._identity: sql.FileIdentity | None = None
        self._wal_paths = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
        self._wal_identities: dict[Path, sql.FileIdentity | None] = dict.fromkeys(self._wal_paths)
        self._startup_done = False  # the spool replayed and the previous run's "in progress" rows marked
        self._abandoned = False  # the loop gave up waiting at shutdown and spooled pending itself
        self._failing = False
        self._retry = _RETRY_FIRST
        self._note = ""  # the last incident, kept in the health detail
        self._moved_aside_at = -math.inf
        self.last_error = ""
        self.dropped = 0  # records neither written nor spooled (the spool unwritable too): logged each time
        self.health = StorageHealth(False, f"{path}: not opened yet")
        # One long-lived thread per History (not per write): it alone owns the SQLite connection, so a locked or
        # slow database waits here and never on the loop or on a visit's path.
        self._thread = threading.Thread(target=self._main, name="history-writer", daemon=True)

    # -- any thread --

    def start(self) -> None:
        if not self._thread.is_alive() and self._thread.ident is None:
            self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    @property
    def backlog_size(self) -> int:
        """Records handed over and not yet committed: waiting in ``pending`` or still in the job queue."""
        with self._count_lock:
            return len(self._pending) + self._queued

    def put(self, record: VisitRecord) -> None:
        with self._count_lock:
            self._queued += 1
        self._jobs.put(_Put(record))

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self._jobs.put(_Call(fn, future))
        return future

    def stop(self, deadline: float) -> None:
        self._jobs.put(_Stop(deadline))

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def abandon(self) -> None:
        """The thread is stuck in the database past the shutdown bound: spool what it holds, from here."""
        with self._lock:
            self._abandoned = True
            self._take_queued()
            self._spool(list(self._pending.values()), "at shutdown (the writer was stuck)")
            with self._count_lock:
                self._pending.clear()

    # -- the writer thread --

    def _main(self) -> None:
        while True:
            try:
                if self._step():
                    return
            except Exception:
                # A bug here must not end the thread: every record after it would wait forever.
                log.exception("history %s: writer error; going on", self.path)
                time.sleep(self._retry)

    def _step(self) -> bool:
        """One round: take the queued jobs, write, answer. True once stopped."""
        try:
            jobs = [self._jobs.get(timeout=self._retry if self._pending else self._check_interval)]
        except queue.Empty:
            jobs = []
        if jobs and isinstance(jobs[0], _Put) and not self._pending:
            jobs += self._write_behind(time.monotonic() + WRITE_BEHIND_S)
        while True:
            try:
                jobs.append(self._jobs.get_nowait())
            except queue.Empty:
                break
        calls: list[_Call] = []
        for job in jobs:
            if isinstance(job, _Put):
                self._add(job.record)
            elif isinstance(job, _Call):
                calls.append(job)
            else:
                for call in calls:
                    self._answer(call)
                self._shutdown(job.deadline)
                return True
        if self._pending or not self._startup_done or not jobs:
            self.write()  # with no job, the periodic check: the file still ours, the backlog retried
        for call in calls:
            self._answer(call)
        return False

    def _write_behind(self, until: float) -> list[_Put | _Call | _Stop]:
        """The jobs that arrive before ``until``; returns early with a question or the stop (they must not wait)."""
        jobs: list[_Put | _Call | _Stop] = []
        while (left := until - time.monotonic()) > 0:
            try:
                job = self._jobs.get(timeout=left)
            except queue.Empty:
                break
            jobs.append(job)
            if not isinstance(job, _Put):
                break
        return jobs

    def _answer(self, call: _Call) -> None:
        if not call.future.set_running_or_notify_cancel():
            return
        try:
            call.future.set_result(call.fn())
        except Exception as exc:  # handed to the caller, who re-raises it on the loop
            call.future.set_exception(exc)

    def _take_queued(self) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if isinstance(job, _Put):
                self._add(job.record, locked=True)

    def _add(self, record: VisitRecord, *, locked: bool = False) -> None:
        if not locked:
            with self._lock:
                self._add(record, locked=True)
            return
        with self._count_lock:
            self._queued -= 1
            previous = self._pending.pop(record.visit, None)
            if previous is not None and record.in_progress and not previous.in_progress:
                record = previous  # a late begin never undoes a finished visit
            self._pending[record.visit] = record
        if len(self._pending) > self._backlog_limit:
            # Memory is bounded; the records are not lost: finished ones go to the spool, replayed later.
            overflow = [r for r in self._pending.values() if not r.in_progress][: len(self._pending) // 2]
            self._spool(overflow, f"(backlog over {self._backlog_limit})")
            for r in overflow:
                with self._count_lock:
                    del self._pending[r.visit]

    def _spool(self, records: list[VisitRecord], why: str) -> None:
        if not records:
            return
        try:
            append_spool(self.spool, records)
        except OSError as exc:
            self.dropped += len(records)
            log.error(
                "history %s: %d record(s) neither written nor spooled %s (%s): %s",
                self.path,
                len(records),
                why,
                exc,
                ", ".join(r.visit for r in records),
            )
        else:
            log.warning("history %s: %d record(s) spooled %s; written at the next start", self.path, len(records), why)

    def write(self, *, again: bool = True) -> bool:
        """Commit the backlog (and the start-up work, and any spool); True when nothing is left waiting."""
        with self._lock:
            batch = list(self._pending.values())
        try:
            db = self._ensure_db()
            spooled = read_spool(self.spool) if self.spool.exists() else []
            salvaged = self._salvaged
            interrupted = 0
            if batch or spooled or salvaged or not self._startup_done:
                db.execute("BEGIN IMMEDIATE")
                try:
                    sql.insert_missing(db, salvaged)
                    sql.upsert(db, spooled)
                    interrupted = 0 if self._startup_done else sql.mark_interrupted(db)
                    sql.upsert(db, batch)
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc)
            if again and sql.is_corrupt(exc):
                return self.write(again=False)  # moved aside: the new database takes the batch at once
            return False
        self._salvaged = []
        if interrupted:
            log.warning(
                "history %s: %d visit(s) the previous run left in progress marked interrupted", self.path, interrupted
            )
        self._startup_done = True
        with self._lock:
            if spooled and not self._abandoned:
                self.spool.unlink(missing_ok=True)
            for record in batch:
                if self._pending.get(record.visit) is record:  # not replaced by a newer one meanwhile
                    with self._count_lock:
                        del self._pending[record.visit]
        if self._failing:
            self._failing = False
            log.warning("history %s: writable again; backlog written", self.path)
        self._retry = _RETRY_FIRST
        self.last_error = ""
        self.health = StorageHealth(True, f"{self.path}: ok" + (f"; {self._note}" if self._note else ""))
        return not self._pending

    def check(self) -> StorageHealth:
        """The selftest's check: the file is still ours and passes ``quick_check``; the backlog retried."""
        try:
            self._ensure_db()
            # A connection of its own: the writer's connection trusts its page cache while no other connection
            # writes, so damage done to the file in place would pass its check.
            probe = self._connect(self.path)
            try:
                sql.quick_check(probe)
            finally:
                probe.close()
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc)  # moves a damaged file aside; the write below makes the new one
        self.write()
        return self.health

    def recent(self, limit: int) -> list[VisitRecord]:
        stored: list[VisitRecord] = []
        try:
            stored = sql.select_recent(self._ensure_db(), limit)
        except (sqlite3.Error, OSError) as exc:
            log.warning("history %s: cannot read (%s); showing the records in memory only", self.path, exc)
        merged = {r.visit: r for r in [*self._salvaged, *stored]} | self._pending
        return sorted(merged.values(), key=lambda r: r.started_at, reverse=True)[:limit]

    def _ensure_db(self) -> sqlite3.Connection:
        if self._db is not None and sql.file_identity(self.path) != self._identity:
            self._lost_file()
        if self._db is None:
            self._db = self._open()
            self._identity = sql.file_identity(self.path)
        if None in self._wal_identities.values():  # the WAL files appear with the first transaction
            self._wal_identities = {p: sql.file_identity(p) for p in self._wal_paths}
        return self._db

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._connect(self.path)
        try:
            sql.prepare(db)
        except BaseException as exc:
            db.close()
            if not sql.is_corrupt(exc):
                raise
            self._move_aside(exc)
            db = self._connect(self.path)
            try:
                sql.prepare(db)
            except BaseException:
                db.close()
                raise
        return db

    def _move_aside(self, exc: BaseException) -> None:
        self._moved_aside_at = time.monotonic()
        aside = sql.move_aside(self.path)
        self._note = f"a damaged database was moved aside to {aside.name} ({_now()})"
        log.error("history %s is damaged (%s): moved aside to %s and a new one made", self.path, exc, aside.name)

    def _lost_file(self) -> None:
        """The file was deleted or replaced under the open connection: carry its rows into the file now there."""
        assert self._db is not None
        what = "deleted" if sql.file_identity(self.path) is None else "replaced"
        try:
            self._salvaged = sql.select_all(self._db)
        except sqlite3.Error:
            self._salvaged = []
        wal_identities = self._wal_identities
        self._close()
        # SQLite leaves our WAL behind when the file went (checked): the next connection would apply it to
        # whatever file is there now, overwriting its pages. The rows are salvaged above; the WAL goes.
        for wal, identity in wal_identities.items():
            if identity is not None and sql.file_identity(wal) == identity:
                wal.unlink(missing_ok=True)
        self._note = f"the file was {what} while running ({_now()}); {len(self._salvaged)} row(s) carried over"
        log.error(
            "history %s was %s while running: reopening, %d row(s) carried over", self.path, what, len(self._salvaged)
        )

    def _failed(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        # Damage again right after a move aside is a failing disk, not a damaged file: no file after file.
        if sql.is_corrupt(exc) and time.monotonic() - self._moved_aside_at > _MOVE_ASIDE_HOLDOFF:
            self._close()
            if self.path.exists():
                self._move_aside(exc)
            self._retry = _RETRY_FIRST  # not a failure burst: the next attempt makes a new database
            self.health = StorageHealth(False, f"{self.path}: damaged ({exc}); moved aside, making a new one")
            return
        if getattr(exc, "sqlite_errorname", "") not in _LOCK_ERRORS:
            self._close()  # a connection that failed mid-write may be unusable (I/O error): reopen next time
        if not self._failing:
            self._failing = True  # once per failure burst
            log.error(
                "history %s: cannot write (%s); keeping %d record(s) in memory and retrying",
                self.path,
                self.last_error,
                len(self._pending),
            )
        self._retry = min(self._retry * 2, _RETRY_MAX)
        self.health = StorageHealth(
            False, f"{self.path}: cannot write ({self.last_error}); {len(self._pending)} record(s) waiting, retrying"
        )

    def _shutdown(self, deadline: float) -> None:
        # Each attempt can take the busy timeout; stop early enough to spool before the deadline.
        margin = sql.BUSY_TIMEOUT + 0.05
        while (self._pending or self._salvaged) and time.monotonic() + margin < deadline and not self.write():
            time.sleep(min(self._retry, max(0.0, deadline - margin - time.monotonic())))
        with self._lock:
            if not self._abandoned:
                self._spool([*self._salvaged, *self._pending.values()], "at shutdown")
                with self._count_lock:
                    self._pending.clear()
        self._close()

    def _close(self) -> None:
        db, self._db = self._db, None
        self._identity = None
        self._wal_identities = dict.fromkeys(self._wal_paths)
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                log.debug("history %s: error closing", self.path, exc_info=True)
