"""The history's SQLite work. Called on the history's writer thread only, never on the loop."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from daemon.history._record import (
    COLUMNS,
    IN_PROGRESS,
    INTERRUPTED,
    INTERRUPTED_DETAIL,
    SCHEMA,
    SCHEMA_VERSION,
    VisitRecord,
)

__all__ = [
    "Connect",
    "CorruptDatabaseError",
    "FileIdentity",
    "connect",
    "file_identity",
    "insert_missing",
    "is_corrupt",
    "mark_interrupted",
    "move_aside",
    "prepare",
    "quick_check",
    "select_all",
    "select_recent",
    "upsert",
]

log = logging.getLogger("daemon.history")

Connect = Callable[[Path], sqlite3.Connection]
FileIdentity = tuple[int, int]  # (st_dev, st_ino): the file the connection was opened on

# How long one statement waits for another process's lock before failing (and being retried by the writer):
# short, so a locked database never holds the writer thread, and so the shutdown bound holds.
BUSY_TIMEOUT = 0.2

_PLACEHOLDERS = ", ".join("?" * len(COLUMNS))
_UPDATES = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c != "visit")
# A visit's row is replaced by what comes later, except that an "in progress" row never replaces a finished
# or interrupted one (a begin replayed from the spool after the visit's end, or after the start marked it).
_UPSERT = (
    f"INSERT INTO visits ({', '.join(COLUMNS)}) VALUES ({_PLACEHOLDERS}) "
    f"ON CONFLICT (visit) DO UPDATE SET {_UPDATES} "
    f"WHERE excluded.outcome != '{IN_PROGRESS}' OR visits.outcome = '{IN_PROGRESS}'"
)


class CorruptDatabaseError(sqlite3.DatabaseError):
    """The file is not a database, or ``PRAGMA quick_check`` found damage."""


def connect(path: Path) -> sqlite3.Connection:
    # isolation_level None: transactions are explicit (BEGIN IMMEDIATE), so a lock is met at BEGIN, not mid-way
    return sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)


def is_corrupt(exc: BaseException) -> bool:
    """Damage (move the file aside), as opposed to trouble that passes (locked, unwritable, disk full)."""
    if isinstance(exc, CorruptDatabaseError):
        return True
    # sqlite_errorname is set on errors from SQLite itself, not on those raised in Python (prepare's)
    name = getattr(exc, "sqlite_errorname", "")
    return isinstance(exc, sqlite3.DatabaseError) and name in ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def file_identity(path: Path) -> FileIdentity | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def quick_check(db: sqlite3.Connection) -> None:
    result = [row[0] for row in db.execute("PRAGMA quick_check")]
    if result != ["ok"]:
        raise CorruptDatabaseError(f"quick_check: {'; '.join(map(str, result[:3]))}")


def prepare(db: sqlite3.Connection) -> None:
    """Journal mode, durability, an integrity check and the schema, on a fresh connection."""
    db.execute("PRAGMA journal_mode=WAL")
    # FULL: a panel loses power without warning; one fsync per visit is nothing
    db.execute("PRAGMA synchronous=FULL")
    quick_check(db)
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise sqlite3.OperationalError(f"schema version {version} is newer than this daemon's {SCHEMA_VERSION}")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in filter(str.strip, SCHEMA[target].split(";")):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {target}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def move_aside(path: Path) -> Path:
    """Rename a damaged database (and its WAL files) to ``<name>.corrupt-<UTC timestamp>``; returns the new path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(target.with_name(target.name + suffix))
    return target


def upsert(db: sqlite3.Connection, records: Iterable[VisitRecord]) -> None:
    db.executemany(_UPSERT, [r.row() for r in records])


def insert_missing(db: sqlite3.Connection, records: Iterable[VisitRecord]) -> None:
    """Rows salvaged from a file deleted or replaced under us: they never overwrite what the new file holds."""
    db.executemany(
        f"INSERT OR IGNORE INTO visits ({', '.join(COLUMNS)}) VALUES ({_PLACEHOLDERS})", [r.row() for r in records]
    )


def mark_interrupted(db: sqlite3.Connection) -> int:
    """Rows a previous run left "in progress" (it was killed): they become "interrupted". Returns how many."""
    cursor = db.execute(
        "UPDATE visits SET outcome = ?, failure = CASE WHEN failure = '' THEN ? ELSE failure || '; ' || ? END "
        "WHERE outcome = ?",
        (INTERRUPTED, INTERRUPTED_DETAIL, INTERRUPTED_DETAIL, IN_PROGRESS),
    )
    return cursor.rowcount


def select_recent(db: sqlite3.Connection, limit: int) -> list[VisitRecord]:
    rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM visits ORDER BY started_at DESC LIMIT ?", (limit,))
    return [VisitRecord.from_row(tuple(row)) for row in rows]


def select_all(db: sqlite3.Connection, limit: int = 100_000) -> list[VisitRecord]:
    return select_recent(db, limit)
