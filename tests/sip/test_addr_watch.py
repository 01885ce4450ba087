"""The rtnetlink reader: which messages count as a change, and the settling delay."""

from __future__ import annotations

import struct

from daemon.sip._addr_watch import AddressWatch

_HEADER = struct.Struct("=LHHLL")
_IFINFO = struct.Struct("=BxHiII")


def _link(index: int, flags: int, kind: int = 16) -> bytes:
    body = _IFINFO.pack(2, 1, index, flags, 0)
    return _HEADER.pack(_HEADER.size + len(body), kind, 0, 0, 0) + body


def _addr(kind: int = 20) -> bytes:
    body = bytes(8)  # ifaddrmsg: its content does not matter, its type does
    return _HEADER.pack(_HEADER.size + len(body), kind, 0, 0, 0) + body


def test_address_messages_count_and_link_counters_do_not() -> None:
    watch = AddressWatch()
    try:
        assert watch._counts(_addr(20)) and watch._counts(_addr(21))
        up = 0x1 | 0x40 | 0x10000
        assert watch._counts(_link(3, up))  # a link not seen before
        assert not watch._counts(_link(3, up | 0x1000))  # the same reachability (another flag): no change
        assert watch._counts(_link(3, 0x1))  # carrier lost
        assert watch._counts(_link(3, up) + _addr(20))  # several messages in one datagram
    finally:
        watch.close()


def test_a_change_is_reported_once_after_it_settled() -> None:
    watch = AddressWatch(settle_seconds=0.5)
    try:
        watch._note(10.0)
        assert not watch.poll(10.2)
        watch._note(10.3)  # the new address after the old one went: the clock starts again
        assert not watch.poll(10.7)
        assert watch.poll(10.8)
        assert not watch.poll(11.5)
    finally:
        watch.close()
