"""Noticing that this host's addresses or links changed, without polling anything hot.

A rtnetlink socket subscribed to IPv4 address and link changes is read without blocking on the owner thread's
turn (a ``recv`` that finds nothing costs ~1 us, no thread, no loop task). When a change was seen and nothing
more came for ``settle_seconds`` (a DHCP renewal flushes the old address and adds the new one: two messages;
a link that flaps sends several), :meth:`AddressWatch.poll` says so once, and the owner tells pjsua2
(``Endpoint.handleIpChange``): its transports are rebuilt and every account re-registers.
"""

from __future__ import annotations

import logging
import socket
import struct

__all__ = ["AddressWatch"]

log = logging.getLogger("daemon.sip._pj_owner")

# linux/rtnetlink.h
_RTMGRP_LINK = 0x1
_RTMGRP_IPV4_IFADDR = 0x10
_RTM_NEWLINK, _RTM_DELLINK, _RTM_NEWADDR, _RTM_DELADDR = 16, 17, 20, 21
_NLMSG_HEADER = struct.Struct("=LHHLL")  # length, type, flags, sequence, port id
_IFINFOMSG = struct.Struct("=BxHiII")  # family, (pad), device type, index, flags, change mask
# The link flags that matter for reaching anyone: administratively up, carrier, running.
_IFF_UP, _IFF_RUNNING, _IFF_LOWER_UP = 0x1, 0x40, 0x10000
_LINK_FLAGS = _IFF_UP | _IFF_RUNNING | _IFF_LOWER_UP


class AddressWatch:
    """Address and link changes of this host (its network namespace), from rtnetlink."""

    def __init__(self, settle_seconds: float = 0.5) -> None:
        self.settle_seconds = settle_seconds
        self.changes_seen = 0  # netlink messages that counted as a change (for tests and status)
        self._changed_at: float | None = None
        self._link_flags: dict[int, int] = {}
        self._socket: socket.socket | None = None
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE)
            sock.bind((0, _RTMGRP_LINK | _RTMGRP_IPV4_IFADDR))
        except OSError as exc:  # a sandbox without netlink: address changes are then noticed at re-registration
            log.warning("sip: cannot watch address changes (rtnetlink: %s); a new address is noticed late", exc)
            return
        self._socket = sock

    @property
    def watching(self) -> bool:
        return self._socket is not None

    def poll(self, now: float) -> bool:
        """Read what netlink sent; True once when changes happened and then settled."""
        if self._socket is None:
            return False
        while True:
            try:
                data = self._socket.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # ENOBUFS: messages were lost, so something changed
                log.debug("sip: rtnetlink: %s", exc)
                self._note(now)
                continue
            if self._counts(data):
                self._note(now)
        if self._changed_at is not None and now - self._changed_at >= self.settle_seconds:
            self._changed_at = None
            return True
        return False

    def next_due(self) -> float | None:
        """When a change seen is settled and :meth:`poll` reports it (None: no change pending). A change not
        read yet is seen at the owner's next turn (IDLE_WAIT_MS at most when idle)."""
        return None if self._changed_at is None else self._changed_at + self.settle_seconds

    def _note(self, now: float) -> None:
        self.changes_seen += 1
        self._changed_at = now

    def _counts(self, data: bytes) -> bool:
        """Whether the messages in ``data`` change an address, or a link's reachability (not its counters)."""
        counted = False
        offset = 0
        while offset + _NLMSG_HEADER.size <= len(data):
            length, kind, _flags, _seq, _pid = _NLMSG_HEADER.unpack_from(data, offset)
            if length < _NLMSG_HEADER.size:
                break
            body = offset + _NLMSG_HEADER.size
            if kind in (_RTM_NEWADDR, _RTM_DELADDR):
                counted = True
            elif kind in (_RTM_NEWLINK, _RTM_DELLINK) and body + _IFINFOMSG.size <= len(data):
                _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(data, body)
                flags = 0 if kind == _RTM_DELLINK else flags & _LINK_FLAGS
                if self._link_flags.get(index) != flags:  # a new link, or one that went up or down
                    counted = True
                self._link_flags[index] = flags
            offset += (length + 3) & ~3  # messages are 4-byte aligned
        return counted

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
