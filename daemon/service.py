"""systemd integration without python-systemd: readiness, the watchdog, journald logging, signals.

Everything here degrades to nothing outside systemd: no ``$NOTIFY_SOCKET`` means :func:`sd_notify` is a
no-op, no ``$WATCHDOG_USEC`` means :func:`watchdog_task` returns at once, no ``$JOURNAL_STREAM`` means
plain timestamped lines on stderr. Nothing here blocks the loop thread: datagrams are sent with
``MSG_DONTWAIT`` and dropped, not waited on, when the receiver is behind.

Protocols: ``sd_notify(3)``, ``systemd.exec(5)`` ($JOURNAL_STREAM), https://systemd.io/JOURNAL_NATIVE_PROTOCOL/.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import struct
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TextIO

import anyio
import anyio.abc

from daemon.logwriter import WRITE_BEHIND_S, WriteBehindHandler

__all__ = [
    "JOURNAL_SOCKET",
    "JournalFormatter",
    "JournalHandler",
    "handle_signals",
    "sd_notify",
    "setup_logging",
    "under_journal",
    "watchdog_interval",
    "watchdog_task",
]

log = logging.getLogger(__name__)

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")


# --- sd_notify -------------------------------------------------------------------------------------------


def _socket_address(value: str) -> str:
    # "@name" is Linux's abstract namespace: the kernel wants a leading NUL byte instead of the "@".
    return "\0" + value[1:] if value.startswith("@") else value


def sd_notify(state: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1\\nSTATUS=ready"``) to systemd. False when not under systemd or not sent."""
    env = os.environ if environ is None else environ
    target = env.get("NOTIFY_SOCKET", "")
    if not target or target[0] not in "/@":  # vsock: addresses are not supported on a Pi daemon
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # MSG_DONTWAIT: a busy systemd must never stall the loop thread; a lost ping is the safe failure.
            sock.sendto(state.encode("utf-8"), socket.MSG_DONTWAIT, _socket_address(target))
    except OSError as exc:
        log.debug("sd_notify %r to %s failed: %s", state.split("\n", 1)[0], target, exc)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout in seconds systemd expects pings within, or None when there is no watchdog."""
    env = os.environ if environ is None else environ
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None  # the variable was meant for a parent that exec'd us without clearing it
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None


async def watchdog_task(
    *,
    environ: Mapping[str, str] | None = None,
    task_status: anyio.abc.TaskStatus[float | None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Ping ``WATCHDOG=1`` at half the watchdog interval, from the event loop itself.

    Running on the loop (not in a thread) is the point: if the loop wedges (a blocking call, a busy
    loop) the pings stop and systemd restarts the daemon, which is what a watchdog is for.
    """
    interval = watchdog_interval(environ)
    task_status.started(interval)
    if interval is None:
        return
    log.debug("watchdog: pinging every %.2f s", interval / 2)
    while True:
        sd_notify("WATCHDOG=1", environ=environ)
        await anyio.sleep(interval / 2)


# --- logging ---------------------------------------------------------------------------------------------


def _syslog_priority(levelno: int) -> int:
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def _visit_of(record: logging.LogRecord) -> str | None:
    # Call-flow code logs with extra={"visit": ...}; the visit log uses extra={"visit_id": ...}.
    visit = getattr(record, "visit", None) or getattr(record, "visit_id", None)
    return None if visit in (None, "", "-") else str(visit)


class JournalFormatter(logging.Formatter):
    """``<6>daemon.flow: [visit 42] message``: journald adds the time and reads the priority prefix."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        visit = _visit_of(record)
        prefix = f"<{_syslog_priority(record.levelno)}>{record.name}: "
        if visit:
            prefix += f"[visit {visit}] "
        # Every line of a traceback gets the prefix: journald splits on newlines, each line its own entry.
        return "\n".join(prefix + line for line in text.splitlines() or [""])


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        visit = _visit_of(record)
        record.visit_tag = f" [visit {visit}]" if visit else ""
        return super().format(record)


_PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s:%(visit_tag)s %(message)s"


def _journal_field(name: str, value: str) -> bytes:
    data = value.encode("utf-8", "replace")
    if b"\n" in data:  # the protocol's binary-safe form: name, newline, 64-bit little-endian length, data
        return name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return name.encode() + b"=" + data + b"\n"


class JournalHandler(logging.Handler):
    """journald's native protocol: one datagram per record, so VISIT_ID is a field ``journalctl`` can filter on.

    An entry that cannot be sent (journald restarting, queue full, too big for a datagram) goes to the
    ``fallback`` handler instead: a log line is never waited for and never silently lost.
    """

    def __init__(
        self, fallback: logging.Handler, *, socket_path: Path = JOURNAL_SOCKET, identifier: str = "intercomd"
    ) -> None:
        super().__init__()
        self.fallback = fallback
        self.socket_path = str(socket_path)
        self.identifier = identifier
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def entry(self, record: logging.LogRecord) -> bytes:
        fields = {
            "MESSAGE": self.format(record),
            "PRIORITY": str(_syslog_priority(record.levelno)),
            "SYSLOG_IDENTIFIER": self.identifier,
            "LOGGER": record.name,
            "CODE_FILE": record.pathname,
            "CODE_LINE": str(record.lineno),
            "CODE_FUNC": record.funcName,
        }
        visit = _visit_of(record)
        if visit:
            fields["VISIT_ID"] = visit
        return b"".join(_journal_field(k, v) for k, v in fields.items())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = self.entry(record)
            self._sock.sendto(data, socket.MSG_DONTWAIT, self.socket_path)
        except OSError:
            self.fallback.handle(record)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self._sock.close()
        self.fallback.close()
        super().close()


def under_journal(environ: Mapping[str, str] | None = None, stream: TextIO | None = None) -> bool:
    """True when ``stream`` (stderr) is the journal stream systemd set up, per ``$JOURNAL_STREAM``."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    if not value:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        dev, ino = (int(part) for part in value.split(":", 1))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError):
        # No file descriptor to compare (a test's StringIO): trust the variable.
        return True
    # systemd.exec(5): a redirected stderr (2>file) inherits the variable but is no longer the journal.
    return (st.st_dev, st.st_ino) == (dev, ino)


_OURS = "_intercom_handler"


def setup_logging(
    level: str | int = "INFO",
    *,
    environ: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
    journal_socket: Path | None = JOURNAL_SOCKET,
    write_behind: float = WRITE_BEHIND_S,
) -> WriteBehindHandler:
    """Install the daemon's one log handler on the root logger and return it (replacing a previous one).

    Under systemd: the native journal protocol when ``journal_socket`` exists, otherwise priority-prefixed
    lines without timestamps (journald stamps them). Elsewhere: timestamped lines on stderr. INFO and DEBUG lines
    are written ``write_behind`` seconds after they are logged, by a thread of their own (0: at once); warnings and
    errors at once (:class:`daemon.logwriter.WriteBehindHandler`, whose ``target`` is the handler above).
    """
    stream = sys.stderr if stream is None else stream
    handler: logging.Handler
    if under_journal(environ, stream):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JournalFormatter("%(message)s"))
        if journal_socket is not None and journal_socket.is_socket():
            handler = JournalHandler(handler, socket_path=journal_socket)
            handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(_PlainFormatter(_PLAIN_FORMAT))
    # What no format of ours prints: not gathered for each record (LogRecord's process, processName, thread and
    # threadName attributes), as the logging docs' "Optimization" section advises. Records are made on every path.
    logging.logMultiprocessing = logging.logProcesses = logging.logThreads = False
    installed = WriteBehindHandler(handler, write_behind)
    setattr(installed, _OURS, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(installed)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return installed


# --- signals ---------------------------------------------------------------------------------------------

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


async def handle_signals(
    *,
    terminate: Callable[[], object],
    reload: Callable[[], Awaitable[object]],
    reload_timeout: float = 30.0,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """SIGHUP -> ``await reload()``; SIGTERM/SIGINT -> ``terminate()`` (e.g. cancel the app's scope), then return.

    Start with ``await tg.start(handle_signals, ...)``: once started, the signals are ours, so a
    ``systemctl reload`` that races start-up is not lost to Python's default SIGHUP action (exit).
    """
    with anyio.open_signal_receiver(*_SIGNALS) as signals:
        task_status.started()
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                log.info("%s: reloading the configuration", name)
                try:
                    with anyio.fail_after(reload_timeout):
                        await reload()
                except Exception:  # a failed reload keeps the old config running; it must not kill the daemon
                    log.exception("reload failed; the previous configuration stays in force")
                continue
            log.info("%s: shutting down", name)
            terminate()
            return
