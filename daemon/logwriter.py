"""The daemon's log lines, written a moment after they are logged: :class:`WriteBehindHandler`.

A log call on a latency path (a press's INVITE, a DTMF digit's relay pulse) used to format its line and send it to
journald right there, on the loop, the panel's dispatcher or the SIP owner thread: CPU the press's INVITE needed on
a Pi-sized CPU (issue 18), and the GIL held while the next thread of the path waited for it. Here the record is
made where it is logged (its time, thread, level and arguments), and formatted and written by a thread of its own
:data:`WRITE_BEHIND_S` later, when the path is done.

What is never held back: WARNING and above, and any record with a traceback (a kept traceback would keep its
frames, and with them pjsua2 objects, alive): those are written at once by the thread that logs them, after the
records waiting before them, so the order of lines is always the order of the log calls. A hard crash (SIGKILL, a
native abort) loses at most :data:`WRITE_BEHIND_S` of INFO and DEBUG lines; ``close()`` (logging's own shutdown at
exit) and ``flush()`` write everything waiting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from enum import Enum

__all__ = ["WRITE_BEHIND_S", "LazyText", "WriteBehindHandler"]

# Longer than a press's path to its INVITE under a Pi-sized CPU quota (p99 under 10 ms), short enough that a
# `journalctl -f` reader sees nothing late.
WRITE_BEHIND_S = 0.05


class LazyText:
    """A log argument whose text is built only when the line is written: ``log.info("%s", LazyText(event.line))``
    builds the JSON line on the writer thread, not on the path that logged it. ``render`` must only read values
    that never change (a frozen event)."""

    __slots__ = ("_render",)

    def __init__(self, render: Callable[[], str]) -> None:
        self._render = render

    def __str__(self) -> str:
        return self._render()


# Arguments that may be formatted later without changing what the line says: immutable values. Any other argument
# (a list, a mutable object, a pjsua2 object) gets its message rendered at once, where it was logged.
_SAFE_ARGS = (str, int, float, bool, type(None), Enum, LazyText)


class WriteBehindHandler(logging.Handler):
    """Hands INFO and DEBUG records to ``target`` from a thread of its own, ``delay`` seconds after the first record
    of a batch; WARNING and above, and records with a traceback, at once (after those waiting). See the module."""

    def __init__(self, target: logging.Handler, delay: float = WRITE_BEHIND_S) -> None:
        super().__init__()
        self.target = target
        self.delay = delay
        self._cond = threading.Condition()
        self._pending: list[logging.LogRecord] = []
        self._writing = threading.Lock()  # one writer at a time: lines leave in the order they were logged
        self._closed = False
        self._thread: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING or record.exc_info or record.stack_info or self.delay <= 0:
            self._write(record)
            return
        if record.args and not all(isinstance(a, _SAFE_ARGS) for a in _args_of(record)):
            record.msg, record.args = record.getMessage(), None
        with self._cond:
            if self._closed:
                closed = True
            else:
                closed = False
                self._pending.append(record)
                if self._thread is None:
                    # One long-lived thread (not one per record); it waits without waking while nothing is logged.
                    self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
                    self._thread.start()
                elif len(self._pending) == 1:
                    self._cond.notify()
        if closed:
            self._write(record)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return  # close() writes what is left
                # The path that logged the first record is still running: let it finish first.
                self._cond.wait_for(lambda: self._closed, timeout=self.delay)
            self._write(None)

    def _write(self, record: logging.LogRecord | None) -> None:
        """Write the records waiting, then ``record``."""
        with self._writing:
            with self._cond:
                batch, self._pending = self._pending, []
            if record is not None:
                batch.append(record)
            for waiting in batch:
                self.target.handle(waiting)

    def flush(self) -> None:
        self._write(None)
        self.target.flush()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)
        self._write(None)
        self.target.close()
        super().close()


def _args_of(record: logging.LogRecord) -> tuple[object, ...]:
    args = record.args
    if isinstance(args, dict):  # log.info("%(name)s", {"name": ...})
        return tuple(args.values())
    return args if isinstance(args, tuple) else (args,)
