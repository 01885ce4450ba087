"""Helpers for the history tests: another connection holding the database's write lock."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["locked"]


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Another connection holding the write lock (BEGIN EXCLUSIVE) until the block ends."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        holding.set()
        release.wait(30)
        db.execute("ROLLBACK")
        db.close()

    holder = threading.Thread(target=hold, name="lock-holder")
    holder.start()
    assert holding.wait(10)
    try:
        yield
    finally:
        release.set()
        holder.join(10)
