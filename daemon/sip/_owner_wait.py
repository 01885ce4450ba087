"""How long the SIP owner thread may sleep in one ``libHandleEvents`` (docs/pjsua2.md, "The owner's wait").

The owner is woken by what it serves: a command comes with a wake datagram from the loop, SIP and RTP are read from
pjsip's ioqueue, and pjsip's own timers (registration refresh, retransmissions, keep-alives) end a wait themselves
(``pjsip_endpt_handle_events2`` waits until the earliest timer at most). What only this thread's turn notices
bounds the wait: while a call exists, ring timeouts, the media watch and prompt ends flagged by the clock thread
(:data:`POLL_MS`); with no call, our own next deadline, and :data:`IDLE_WAIT_MS` for what nothing announces (a
netlink message, an inbound connection to reap). Pure, so it is tested without pjsua2.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
from collections.abc import Iterable

__all__ = ["IDLE_WAIT_MS", "POLL_MS", "name_os_thread", "owner_wait_ms"]

POLL_MS = 20  # while a call exists or its media clock runs
IDLE_WAIT_MS = 1000  # with no call: about one wake-up a second


def owner_wait_ms(now: float, *, commands_waiting: bool, busy: bool, deadlines: Iterable[float | None]) -> int:
    """Milliseconds the next ``libHandleEvents`` may wait. ``busy``: a call exists or the clock runs;
    ``deadlines``: monotonic times of our own work to come (None: none)."""
    if commands_waiting:
        return 0
    if busy:
        return POLL_MS
    wait = min((t - now for t in deadlines if t is not None), default=IDLE_WAIT_MS / 1000)
    return max(0, min(IDLE_WAIT_MS, math.ceil(wait * 1000)))


def name_os_thread(name: bytes) -> None:
    """Give the calling thread its name in the kernel too (``top -H``, /proc/PID/task/*/comm, the idle
    benchmark): Python names threads for itself only. Best effort: PR_SET_NAME is Linux's."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name[:15]), 0, 0, 0)  # 15: PR_SET_NAME
