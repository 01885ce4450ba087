"""A UDP relay that stamps SIP INVITEs on arrival: "INVITE leaving the panel's socket", measured in-process.

The resident's URI points at the relay; it forwards every datagram to the far end and the far end's
replies (sent back to the relay because pjsip's Via carries ``rport``) to the panel. In-dialog requests go
to the Contact addresses directly, so only the initial INVITE (and a CANCEL) pass through here.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import socket
import struct
import subprocess
import sys
import threading
import time

__all__ = ["RELAY_THREAD_NAME", "InviteStamper", "InviteStamperProcess"]

# The relay's kernel thread name (/proc/PID/task/TID/comm): benchmarks.cpu_quota finds it by this name and
# keeps it out of the measured process's CPU quota, so the stamp is not delayed by the quota it measures.
RELAY_THREAD_NAME = "bench-relay"
PR_SET_NAME = 15


# SO_TIMESTAMPNS: each datagram carries the moment the kernel queued it on the relay's socket (CLOCK_REALTIME), i.e.
# the moment the panel's sendto() returned on loopback. The stamp is that moment, not the moment the relay process
# got a CPU to read it: on a machine shared with other jobs the relay waited up to ~7 ms for a CPU, which a stamp
# taken on reading counted against the panel.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")


def _arrival(ancdata: list[tuple[int, int, bytes]], now: float) -> float:
    """The datagram's kernel arrival time on CLOCK_MONOTONIC (``now``, the monotonic time of reading, without one)."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(data)
            # The two clocks' offset, read now: it moves only by NTP's slewing, nothing over a few milliseconds.
            offset = time.time() - time.monotonic()
            return min(now, float(sec + nsec / 1e9 - offset))
    return now


class InviteStamper(threading.Thread):
    def __init__(self, listen_port: int, far_port: int) -> None:
        super().__init__(name="bench-invite-relay", daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind(("127.0.0.1", listen_port))
        self.far = ("127.0.0.1", far_port)
        self.panel: tuple[str, int] | None = None
        self.invites: list[float] = []

    def run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # a name is a convenience, not needed to relay
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, RELAY_THREAD_NAME.encode(), 0, 0, 0)
        while True:
            try:
                data, ancdata, _flags, src = self.sock.recvmsg(65536, 64)
            except OSError:
                return
            now = _arrival(ancdata, time.monotonic())
            if src == self.far:
                if self.panel:
                    self.sock.sendto(data, self.panel)
                continue
            if data.startswith(b"INVITE "):
                self.invites.append(now)
            self.panel = src
            self.sock.sendto(data, self.far)


class InviteStamperProcess:
    """The same relay in a process of its own, stamping on its own clock reading (CLOCK_MONOTONIC is one clock for
    every process): a relay thread in the measured process needs that process's GIL to take its stamp, and under a
    CPU quota a throttled thread of the process can hold the GIL, so the stamp came late (after makeCall had
    returned) although the INVITE had left. The stamps are read back by a thread here as they come."""

    def __init__(self, listen_port: int, far_port: int) -> None:
        self.invites: list[float] = []
        self._cmd = [sys.executable, "-m", "benchmarks._wire", str(listen_port), str(far_port)]
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(self._cmd, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        if self._proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"INVITE relay exited before it was ready (status {self._proc.wait()})")
        atexit.register(self.stop)
        threading.Thread(target=self._read, name="bench-relay-reader", daemon=True).start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self.invites.append(float(line))

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(5)


class _PrintingStamper(InviteStamper):
    """The relay process's own: each INVITE's stamp printed as it comes."""

    def __init__(self, listen_port: int, far_port: int) -> None:
        super().__init__(listen_port, far_port)
        self.invites = _Printed()


class _Printed(list[float]):
    def append(self, t: float) -> None:
        sys.stdout.write(f"{t:.9f}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    relay = _PrintingStamper(int(sys.argv[1]), int(sys.argv[2]))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    relay.run()
