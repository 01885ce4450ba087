"""pjsip's log, routed into Python ``logging`` (the ``_pj_*`` modules are the only ones importing pjsua2).

Nothing of pjsip's reaches stdout or stderr directly: lines written while ``libCreate`` runs (before any
writer can be installed) are caught from file descriptor 1 and re-logged at DEBUG, and from ``libInit`` on
every line goes through :class:`PjLogWriter` and the rules of :mod:`daemon.sip._pjsip_log`.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pjsua2 as pj

from daemon.sip._pjsip_log import PjsipLogRouter

__all__ = ["PJSIP_LOGGER", "PjLogWriter", "log_config", "stdout_to_debug"]

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

    def write(self, entry: Any) -> None:
        try:
            self.router.route(int(entry.level), str(entry.msg), self._clock())
        except Exception:
            self.router.suppressed_total += 1


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


@contextlib.contextmanager
def stdout_to_debug() -> Iterator[None]:
    """Catch what C code prints on file descriptor 1 meanwhile (pjlib's default log writer, before ours is
    installed) and log it at DEBUG. Brief (``libCreate`` takes ~1 ms); Python's own stdout is flushed first.
    Whatever another thread printed on fd 1 in that millisecond is logged the same way, not lost."""
    sys.stdout.flush()
    libc = ctypes.CDLL(None)
    try:
        saved = os.dup(1)
    except OSError:  # no stdout at all: nothing can be printed there either
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield
        finally:
            libc.fflush(None)  # C stdio's buffer still holds pjlib's lines
            os.dup2(saved, 1)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode("utf-8", "replace").splitlines():
                if line.strip():
                    PJSIP_LOGGER.debug("pjsip: %s", line.strip())
