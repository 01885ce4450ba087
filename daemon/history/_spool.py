"""The spool: a small JSONL file beside the database for records the database could not take in time.

Written at shutdown (what the bounded flush could not write) and when the in-memory backlog overflows;
replayed into the database by the next successful write, then removed. Replaying is an upsert by visit id,
so a record both spooled and written (a write that finished after the bound) is stored once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from daemon.history._record import VisitRecord
from daemon.jsonl import append_lines

__all__ = ["append_spool", "read_spool", "spool_path"]

log = logging.getLogger("daemon.history")


def spool_path(database: Path) -> Path:
    return database.with_name(database.name + ".spool.jsonl")


def append_spool(path: Path, records: Iterable[VisitRecord]) -> int:
    """Append ``records`` and fsync; returns how many. Raises ``OSError``."""
    text = "".join(r.spool_line() + "\n" for r in records)
    if not text:
        return 0
    # Whole or not at all: a short write on a full disk used to be counted as spooled, and its torn line
    # then ate the next record appended after it.
    append_lines(path, text, fsync=True)
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
