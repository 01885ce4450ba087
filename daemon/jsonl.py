"""Appending whole lines to a JSONL file (the event log, the history spool), or nothing.

A full disk writes part of a batch and then fails (``ENOSPC``), or ``write`` returns short without an error.
Left as it is, the torn tail and the next batch's first line become one unreadable line: the event or record
that failed is lost *and* takes the next good one with it. So a failed append is cut back to where it began,
and a file that already ends mid-line (a power cut, kill -9 mid-write, an older daemon) gets a newline first.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

__all__ = ["append_lines"]


def append_lines(path: Path, text: str, *, fsync: bool = False) -> tuple[bool, tuple[int, int]]:
    """Append ``text`` (whole lines, each ending in ``\\n``) to ``path`` entirely or not at all. Blocking.

    Returns whether the file existed before, and its (device, inode). Raises ``OSError``; the file is then
    as it was (as far as the file system lets a truncate succeed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        st = os.fstat(fd)
        start = st.st_size
        data = text.encode("utf-8")
        if start and _last_byte(path, start) != b"\n":
            data = b"\n" + data
        try:
            _write_all(fd, data)
            if fsync:
                os.fsync(fd)
        except OSError:
            # If even this fails, the next append starts with a newline: only this batch is lost, never the next.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise
        return existed, (st.st_dev, st.st_ino)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written; a write that takes nothing is a full disk."""
    written = 0
    while written < len(data):
        n = os.write(fd, data[written:])
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written += n


def _last_byte(path: Path, size: int) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(size - 1)
            return f.read(1)
    except OSError:
        return b"\n"
