"""A UDP relay that stamps SIP INVITEs on arrival: "INVITE leaving the panel's socket", measured in-process.

The resident's URI points at the relay; it forwards every datagram to the far end and the far end's
replies (sent back to the relay because pjsip's Via carries ``rport``) to the panel. In-dialog requests go
to the Contact addresses directly, so only the initial INVITE (and a CANCEL) pass through here.
"""

from __future__ import annotations

import contextlib
import ctypes
import socket
import threading
import time

__all__ = ["RELAY_THREAD_NAME", "InviteStamper"]

# The relay's kernel thread name (/proc/PID/task/TID/comm): benchmarks.cpu_quota finds it by this name and
# keeps it out of the measured process's CPU quota, so the stamp is not delayed by the quota it measures.
RELAY_THREAD_NAME = "bench-relay"
PR_SET_NAME = 15


class InviteStamper(threading.Thread):
    def __init__(self, listen_port: int, far_port: int) -> None:
        super().__init__(name="bench-invite-relay", daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", listen_port))
        self.far = ("127.0.0.1", far_port)
        self.panel: tuple[str, int] | None = None
        self.invites: list[float] = []

    def run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # a name is a convenience, not needed to relay
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, RELAY_THREAD_NAME.encode(), 0, 0, 0)
        while True:
            try:
                data, src = self.sock.recvfrom(65536)
            except OSError:
                return
            now = time.monotonic()
            if src == self.far:
                if self.panel:
                    self.sock.sendto(data, self.panel)
                continue
            if data.startswith(b"INVITE "):
                self.invites.append(now)
            self.panel = src
            self.sock.sendto(data, self.far)
