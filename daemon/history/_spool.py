"""The spool: a small JSONL file beside the database for records the database could not take in time.

Written at shutdown (what the bounded flush could not write) and when the in-memory backlog overflows;
replayed into the database by the next successful write, then removed. Replaying is an upsert by visit id,
so a record both spooled and written (a write that finished after the bound) is stored once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from daemon.history._record import VisitRecord

__all__ = ["append_spool", "read_spool", "spool_path"]

log = logging.getLogger("daemon.history")


def spool_path(database: Path) -> Path:
    return database.with_name(database.name + ".spool.jsonl")


def append_spool(path: Path, records: Iterable[VisitRecord]) -> int:
    """Append ``records`` and fsync; returns how many. Raises ``OSError``."""
    text = "".join(r.spool_line() + "\n" for r in records)
    if not text:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return text.count("\n")


def read_spool(path: Path) -> list[VisitRecord]:
    """The spooled records, oldest first; a line that cannot be read (torn by a power cut) is logged and skipped."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    records: list[VisitRecord] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(VisitRecord.from_spool_line(line))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("history spool %s: line %d unreadable, skipped (%s)", path, number, type(exc).__name__)
    return records
