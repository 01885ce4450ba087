"""Visit history: every visit's outcome in SQLite under ``state_dir``, kept across restarts.

SQLite work never runs on the loop thread: it goes to a worker thread under a ``CapacityLimiter(1)``, so
one thread at a time uses the connection (hence ``check_same_thread=False``: anyio may pick a different
worker thread for each call). Nothing is lost when the database cannot be written (read-only file system,
full disk, a locked or damaged file): records wait in a bounded in-memory backlog, the error is logged once
per failure burst, and every later write or periodic flush retries. Writes are upserts keyed by visit id,
so a retry after a half-known failure never duplicates a visit.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple

import anyio

__all__ = ["OUTCOMES", "SCHEMA_VERSION", "History", "VisitHistory", "VisitRecord"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# The outcomes the flow produces; others are stored as given (the history never rejects a visit).
OUTCOMES = ("door_opened", "no_answer", "busy", "out_of_service", "rejected", "deadline", "error")

SCHEMA_VERSION = 1
_SCHEMA = {
    1: """
        CREATE TABLE visits (
            visit TEXT PRIMARY KEY,
            apartment TEXT NOT NULL,
            button TEXT NOT NULL,
            started_at TEXT NOT NULL,
            outcome TEXT NOT NULL,
            answered_by TEXT NOT NULL DEFAULT '',
            answered_at TEXT,
            door_opened INTEGER NOT NULL DEFAULT 0,
            opened_by TEXT NOT NULL DEFAULT '',
            open_method TEXT NOT NULL DEFAULT '',
            ended_at TEXT,
            ring_seconds REAL,
            call_seconds REAL,
            duration_seconds REAL,
            failure TEXT NOT NULL DEFAULT '',
            extra TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX visits_started ON visits (started_at);
    """,
}
_COLUMNS = (
    "visit",
    "apartment",
    "button",
    "started_at",
    "outcome",
    "answered_by",
    "answered_at",
    "door_opened",
    "opened_by",
    "open_method",
    "ended_at",
    "ring_seconds",
    "call_seconds",
    "duration_seconds",
    "failure",
    "extra",
)


@dataclass(frozen=True)
class VisitRecord:
    """One visit's outcome. Times are timezone-aware; ``extra`` must be JSON-serializable (no secrets)."""

    visit: str
    apartment: str
    button: str
    started_at: datetime
    outcome: str
    answered_by: str = ""
    answered_at: datetime | None = None
    door_opened: bool = False
    opened_by: str = ""
    open_method: str = ""  # "dtmf", "exit_button", "control", ...
    ended_at: datetime | None = None
    ring_seconds: float | None = None
    call_seconds: float | None = None
    duration_seconds: float | None = None
    failure: str = ""  # why it did not work, for the people reading the history
    extra: Mapping[str, Any] = field(default_factory=dict)

    def _row(self) -> tuple[object, ...]:
        def iso(t: datetime | None) -> str | None:
            # UTC, so the text sorts in time order whatever offset the caller used
            return None if t is None else t.astimezone(UTC).isoformat()

        return (
            self.visit,
            self.apartment,
            self.button,
            iso(self.started_at),
            self.outcome,
            self.answered_by,
            iso(self.answered_at),
            int(self.door_opened),
            self.opened_by,
            self.open_method,
            iso(self.ended_at),
            self.ring_seconds,
            self.call_seconds,
            self.duration_seconds,
            self.failure,
            json.dumps(dict(self.extra), ensure_ascii=False, sort_keys=True, default=str),
        )

    @classmethod
    def _from_row(cls, row: tuple[Any, ...]) -> VisitRecord:
        v = dict(zip(_COLUMNS, row, strict=True))

        def when(key: str) -> datetime | None:
            return None if v[key] is None else datetime.fromisoformat(v[key])

        started = when("started_at")
        assert started is not None  # NOT NULL in the schema
        return cls(
            v["visit"],
            v["apartment"],
            v["button"],
            started,
            v["outcome"],
            v["answered_by"],
            when("answered_at"),
            bool(v["door_opened"]),
            v["opened_by"],
            v["open_method"],
            when("ended_at"),
            v["ring_seconds"],
            v["call_seconds"],
            v["duration_seconds"],
            v["failure"],
            json.loads(v["extra"]),
        )


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # timeout: how long a write waits for a lock, which bounds every worker-thread call
    return sqlite3.connect(path, timeout=5.0, check_same_thread=False, isolation_level=None)


class VisitHistory:
    """The visit history database. ``connect`` and ``on_db_thread`` are for tests (injected, not patched).

    ``on_db_thread(op)`` is called in the worker thread before each database operation.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        backlog_limit: int = 1000,
        connect: Callable[[Path], sqlite3.Connection] = _connect,
        on_db_thread: Callable[[str], None] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.path = Path(path)
        self._timeout = timeout  # per record/open/close; SQLite's own lock timeout (5 s) bounds each thread call
        self._backlog_limit = backlog_limit
        self._connect_fn = connect
        self._hook = on_db_thread
        self._limiter = anyio.CapacityLimiter(1)  # one thread on the connection at a time
        self._db: sqlite3.Connection | None = None
        self._pending: dict[str, VisitRecord] = {}  # loop thread only: not yet in the database
        self._failing = False
        self.dropped = 0  # records pushed out of a full backlog (logged): the only way to lose one
        self.last_error = ""

    @classmethod
    def in_state_dir(cls, state_dir: Path | str, **kwargs: Any) -> VisitHistory:
        return cls(Path(state_dir) / "history.sqlite3", **kwargs)

    @property
    def backlog_size(self) -> int:
        return len(self._pending)

    async def __aenter__(self) -> VisitHistory:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def open(self) -> bool:
        """Open (or create, or migrate) the database. False if it cannot be now: records will wait."""
        return await self.flush(self._timeout)

    async def record(self, record: VisitRecord) -> bool:
        """Store ``record``. Never raises for database trouble: it waits in the backlog. True if written."""
        self._pending.pop(record.visit, None)  # a re-recorded visit moves to the end (newest)
        self._pending[record.visit] = record
        while len(self._pending) > self._backlog_limit:
            oldest = next(iter(self._pending))
            del self._pending[oldest]
            self.dropped += 1
            log.error("history backlog full (%d): visit %s dropped unrecorded", self._backlog_limit, oldest)
        return await self.flush(self._timeout)

    async def flush(self, timeout: float = 10.0) -> bool:  # noqa: ASYNC109  (answers a bool rather than raising)
        """Try to write the backlog within ``timeout``; True when it is empty. For shutdown and the periodic flush."""
        with anyio.move_on_after(timeout):
            batch = list(self._pending.values())
            try:
                await self._run(self._write, batch)
            except (sqlite3.Error, OSError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                if not self._failing:
                    self._failing = True
                    log.error(
                        "history %s: cannot write (%s); keeping %d record(s) in memory and retrying",
                        self.path,
                        self.last_error,
                        len(self._pending),
                    )
                return False
            for rec in batch:
                if self._pending.get(rec.visit) is rec:  # not replaced by a newer record meanwhile
                    del self._pending[rec.visit]
            if self._failing:
                self._failing = False
                log.warning("history %s: writable again; backlog written", self.path)
        return not self._pending

    async def run(self, interval: float = 30.0) -> None:
        """Periodic flush, for the app's task group: the backlog gets out even when no visit comes."""
        while True:
            await anyio.sleep(interval)
            if self._pending:
                await self.flush()

    async def recent(self, limit: int = 20) -> list[VisitRecord]:
        """The newest ``limit`` visits, newest first, including those still waiting in the backlog."""
        stored: list[VisitRecord] = []
        try:
            with anyio.fail_after(self._timeout):
                stored = await self._run(self._select, limit)
        except (sqlite3.Error, OSError, TimeoutError) as exc:
            log.warning("history %s: cannot read (%s); showing the in-memory backlog only", self.path, exc)
        merged = {r.visit: r for r in stored} | self._pending
        return sorted(merged.values(), key=lambda r: r.started_at, reverse=True)[:limit]

    async def aclose(self) -> None:
        if not await self.flush(self._timeout):
            log.error(
                "history %s: %d record(s) could not be written before shutdown: %s",
                self.path,
                len(self._pending),
                ", ".join(self._pending),
            )
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._timeout):
            await self._run(self._close)

    async def _run(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        # Not abandon_on_cancel: the limiter must stay held while a thread uses the connection.
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    # Worker thread only, below.

    def _conn(self, op: str) -> sqlite3.Connection:
        if self._hook is not None:
            self._hook(op)
        if self._db is None:
            db = self._connect_fn(self.path)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                # FULL: a panel loses power without warning; one fsync per visit is nothing
                db.execute("PRAGMA synchronous=FULL")
                self._migrate(db)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version} is newer than this daemon's {SCHEMA_VERSION}")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, _SCHEMA[target].split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {target}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _write(self, batch: list[VisitRecord]) -> None:
        db = self._conn("write")
        if not batch:
            return
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                f"INSERT OR REPLACE INTO visits ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                [r._row() for r in batch],
            )
            db.execute("COMMIT")
        except BaseException:
            # a connection that failed mid-write may be unusable (I/O error): reopen on the next try
            self._close()
            raise

    def _select(self, limit: int) -> list[VisitRecord]:
        db = self._conn("read")
        rows = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM visits ORDER BY started_at DESC LIMIT ?", (limit,))
        return [VisitRecord._from_row(tuple(row)) for row in rows]

    def _close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            try:
                db.close()
            except sqlite3.Error:
                log.debug("history %s: error closing", self.path, exc_info=True)


History = VisitHistory  # the short name the app uses
