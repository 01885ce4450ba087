"""A stand-in for journald in the benchmarks: drains what the daemon logs the way production has it drained.

Under systemd the daemon logs at INFO (``intercomd``'s default) through :func:`daemon.service.setup_logging`: one
datagram per record to journald's native socket, or, when a datagram cannot be sent, a priority-prefixed line on
stderr, which systemd connects to journald. This process is that reader, as a separate process (journald is one;
:mod:`benchmarks.cpu_quota` moves it out of the measured cgroup as it does kamailio): it binds a datagram socket,
reads a stream on its stdin, and counts what arrived. The records are read and dropped; nothing is stored.

    python -m benchmarks._journal_sink SOCKET_PATH   (prints "ready", then on SIGTERM or stdin's end one JSON line)

:class:`JournalSink` starts it and points a process's logging at it (:meth:`JournalSink.log_here`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any, Literal

__all__ = ["LOGGING_MODES", "JournalSink", "LoggingMode"]

LoggingMode = Literal["journal", "stderr", "none"]
# journal: INFO, native protocol to the sink's socket (production under systemd: /run/systemd/journal/socket);
# stderr: INFO, journal-formatted lines on a pipe the sink drains (systemd's stderr stream, no native socket);
# none: no handler set up, WARNING and up through logging's last resort (what the harness did before).
LOGGING_MODES: tuple[LoggingMode, ...] = ("journal", "stderr", "none")
RCVBUF = 8 << 20  # journald asks for 8 MiB on its native socket


def serve(path: str) -> dict[str, int]:
    counts = {"datagrams": 0, "datagram_bytes": 0, "stream_bytes": 0, "stream_lines": 0}
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.bind(path)
    stop = [False]

    def on_term(_sig: int, _frame: FrameType | None) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, on_term)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "dgram")
    sel.register(sys.stdin.buffer, selectors.EVENT_READ, "stream")
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    stream_open = True
    while not stop[0] and stream_open:
        for key, _ in sel.select(0.5):
            if key.data == "dgram":
                data = sock.recv(1 << 17)
                counts["datagrams"] += 1
                counts["datagram_bytes"] += len(data)
            else:
                chunk = os.read(sys.stdin.fileno(), 1 << 16)
                if not chunk:
                    stream_open = False
                    break
                counts["stream_bytes"] += len(chunk)
                counts["stream_lines"] += chunk.count(b"\n")
    sock.close()
    return counts


class JournalSink:
    """The sink as a child process, and this process's logging pointed at it, as systemd would."""

    def __init__(self, mode: LoggingMode) -> None:
        self.mode = mode
        self._tmp = tempfile.TemporaryDirectory(prefix="journal-")
        self.socket_path = Path(self._tmp.name) / "socket"
        self._proc: subprocess.Popen[bytes] | None = None
        self.result: dict[str, Any] = {"mode": mode}

    def __enter__(self) -> JournalSink:
        if self.mode == "none":
            return self
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._journal_sink", str(self.socket_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._proc.stdout is not None and self._proc.stdin is not None
        if self._proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"journal sink exited before it was ready (status {self._proc.wait()})")
        self.log_here(self._proc.stdin.fileno())
        return self

    def log_here(self, fd: int) -> None:
        """The daemon's own logging set-up (INFO, as ``intercomd`` starts), with ``fd`` as its journal stream."""
        from daemon.service import setup_logging

        stream = open(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed in exit
        st = os.fstat(stream.fileno())
        # $JOURNAL_STREAM names the stream systemd connected stderr to: setup_logging then logs as under systemd.
        environ = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        journal = self.socket_path if self.mode == "journal" else None
        self._handler = setup_logging("INFO", environ=environ, stream=stream, journal_socket=journal)
        self._stream = stream

    def __exit__(self, *exc: object) -> None:
        if self._proc is None:
            return
        root = logging.getLogger()
        root.removeHandler(self._handler)
        self._handler.close()
        root.setLevel(logging.WARNING)
        self._stream.close()
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.close()  # its end of the stream: the sink reports and exits
        out = self._proc.stdout.read()
        self._proc.wait(timeout=10)
        lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
        self.result.update(json.loads(lines[-1]) if lines else {"error": "journal sink printed nothing"})
        self._tmp.cleanup()


def main() -> None:
    counts = serve(sys.argv[1])
    sys.stdout.write(json.dumps(counts) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
