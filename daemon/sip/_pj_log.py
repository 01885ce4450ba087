"""pjsip's log, routed into Python ``logging`` (the ``_pj_*`` modules are the only ones importing pjsua2).

Nothing of pjsip's reaches stdout or stderr directly: lines written while ``libCreate`` and ``libInit`` run
(before the writer is installed; libjack's probe when pjmedia lists ALSA devices) are caught from file
descriptors 1 and 2 and re-logged at DEBUG, and from ``libInit`` on every pjsip line goes through
:class:`PjLogWriter` and the rules of :mod:`daemon.sip._pjsip_log`.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pjsua2 as pj

from daemon.sip._pjsip_log import PjsipLogRouter

__all__ = ["PJSIP_LOGGER", "PjLogWriter", "log_config", "native_output_to_debug"]

PJSIP_LOGGER = logging.getLogger("daemon.sip.pjsip")

# Lines above level 3 are per-packet detail (4 prints whole SIP messages, DTMF bodies and Authorization
# headers included, and digits we dial): never asked of pjsip, whatever our own log level.
_MAX_PJ_LEVEL = 3


class PjLogWriter(pj.LogWriter):  # type: ignore[misc]
    """Runs on whichever thread pjsip logs from (with ``mainThreadOnly``, lines from other pjsip threads
    arrive on the owner's next poll): it only calls ``logging``, never the loop, never pjsua2."""

    def __init__(self, router: PjsipLogRouter, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.router = router
        self._clock = clock
        self.failures = 0  # lines that could not be routed

    def write(self, entry: Any) -> None:
        try:
            self.router.route(int(entry.level), str(entry.msg), self._clock())
        except Exception:  # raised into SWIG, it would be printed to stderr, on every line: counted instead
            self.failures += 1


def log_config(cfg: Any, writer: PjLogWriter) -> None:
    """Fill ``EpConfig.logConfig``: every line to ``writer``, none to the console, no message dumps."""
    level = _MAX_PJ_LEVEL if PJSIP_LOGGER.isEnabledFor(logging.DEBUG) else 2
    cfg.logConfig.level = level
    # pjsua hands its callback only the lines up to consoleLevel, and prints nothing itself once a
    # callback (the writer) is set: so the same level, not 0.
    cfg.logConfig.consoleLevel = level
    cfg.logConfig.msgLogging = False  # SIP messages carry DTMF (SIP INFO) and credentials
    cfg.logConfig.decor = pj.PJ_LOG_HAS_SENDER  # the C file; no time, thread or colour: logging adds its own
    cfg.logConfig.writer = writer
    # pjsua2 deletes the writer in libDestroy: C++ owns it from here (SWIG keeps the Python object alive).
    writer.__disown__()


# What native code prints while pjsua2 starts: pjlib's start-up lines ("10:36:34.574 os_core_unix.c !pjlib
# 2.15.1 for POSIX initialized"), and, in a source build with ALSA's plugins, libjack's probe as pjmedia
# lists the ALSA devices ("jack server is not running or cannot be started", "Cannot connect to server
# socket", "JackShmReadWritePtr::..."), and alsa-lib's own complaints ("ALSA lib pcm.c:...").
_NATIVE_NOISE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3} |ALSA lib |Jack|jack |Cannot connect to server)")


@contextlib.contextmanager
def native_output_to_debug() -> Iterator[None]:
    """Catch what C code prints on file descriptors 1 and 2 meanwhile (pjlib's default writer before ours
    is installed, libjack's probe during ``libInit``) and log it at DEBUG. What is not such noise (another
    thread's line in that instant, ~1 ms for ``libCreate``, up to ~0.1 s for ``libInit`` with ALSA) is
    written back to where it was going, unchanged. Python's own streams are flushed first."""
    sys.stdout.flush()
    sys.stderr.flush()
    libc = ctypes.CDLL(None)
    saved: dict[int, int] = {}
    try:
        for fd in (1, 2):
            saved[fd] = os.dup(fd)
    except OSError:  # no stdout or stderr at all: nothing can be printed there either
        for copy in saved.values():
            os.close(copy)
        yield
        return
    with tempfile.TemporaryFile() as out_sink, tempfile.TemporaryFile() as err_sink:
        sinks = {1: out_sink, 2: err_sink}
        try:
            for fd, sink in sinks.items():
                os.dup2(sink.fileno(), fd)
            yield
        finally:
            libc.fflush(None)  # C stdio's buffers still hold what was printed
            for fd, original in saved.items():
                os.dup2(original, fd)
                os.close(original)
            for fd, sink in sinks.items():
                sink.seek(0)
                _sort_native_output(fd, sink.read())


def _sort_native_output(fd: int, data: bytes) -> None:
    kept = []
    for line in data.decode("utf-8", "replace").splitlines(keepends=True):
        if _NATIVE_NOISE.match(line):
            PJSIP_LOGGER.debug("pjsip: %s", line.strip())
        elif line.strip():
            kept.append(line)
    if kept:
        os.write(fd, "".join(kept).encode())
