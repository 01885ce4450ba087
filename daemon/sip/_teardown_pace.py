"""Paces the refusal of unwanted inbound calls so that an INVITE flood cannot abort the process.

Why (measured; docs/pjsua2.md, section 5): pjsua creates a call's media transport (an RTP and an RTCP socket) before
``onIncomingCall``, so every INVITE with SDP that gets a call slot costs two sockets. pjlib's select-based
ioqueue (a default Linux build's; ours uses epoll with 1,024, config_site.h, and this pace still budgets for 64
so that a pjsua2 built without our config stays safe) has 64 socket keys, and a closed socket's key is
reusable only 500 ms later. Refusing every INVITE at once turns 60 INVITEs sent 2 ms apart into 120 keys in
that half second, and pjlib asserts (``pj_ioqueue_register_sock2``) and aborts. Refusals held back to a budget
per half second keep the keys in bounds; while refusals wait, they hold their call slots, and pjsua itself
answers any further INVITE "486 Busy Here" without creating a media transport (200 such survived).

This module is pure arithmetic on timestamps, so it is tested without pjsua2.
"""

from __future__ import annotations

from collections import deque

from daemon.sip._inbound_tcp import INBOUND_TCP_CAP

__all__ = ["IOQUEUE_KEYS", "KEY_FREE_DELAY_S", "TeardownPace", "refusal_budget"]

IOQUEUE_KEYS = 64  # PJ_IOQUEUE_MAX_HANDLES of the select ioqueue
KEY_FREE_DELAY_S = 0.5  # PJ_IOQUEUE_KEY_FREE_DELAY: a closed socket's key comes back after this
_WINDOW_S = KEY_FREE_DELAY_S + 0.1  # slack for the poll that moves closed keys back to the free list
_RESERVED_KEYS = 6  # SIP listeners (UDP, TCP/TLS), TLS connections to the registrar, the wake socket
_KEYS_PER_CALL = 2  # RTP + RTCP


def refusal_budget(max_calls: int) -> int:
    """Call teardowns allowed per window so that live and closing keys never exceed the ioqueue.

    Keys in use at worst: ``2 * max_calls`` for live calls, plus ``2 *`` every teardown in the window; the
    teardowns are our paced refusals plus, unpaced, each live call ending (``max_calls`` more). So
    ``2m + 2(budget + m) <= 64 - reserved``; the inbound TCP/TLS connections kept (at most
    ``INBOUND_TCP_CAP``, one socket each) are reserved too.
    """
    free = (IOQUEUE_KEYS - _RESERVED_KEYS - INBOUND_TCP_CAP) // _KEYS_PER_CALL
    return max(0, free - 2 * max_calls)


class TeardownPace:
    """Counts call teardowns in the last window; :meth:`room` says how many more may happen now."""

    def __init__(self, budget: int, window: float = _WINDOW_S) -> None:
        if budget < 1:
            raise ValueError(f"teardown budget must be at least 1, got {budget}")
        self.budget = budget
        self.window = window
        self._times: deque[float] = deque()
        self.held_back = 0  # refusals that had to wait for a later turn (a flood was paced)

    def note(self, now: float) -> None:
        """A call ended (any call: its media transport closed)."""
        self._times.append(now)

    def room(self, now: float) -> int:
        times = self._times
        while times and times[0] <= now - self.window:
            times.popleft()
        return max(0, self.budget - len(times))
