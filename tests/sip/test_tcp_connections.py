"""Inbound TCP connections are bounded and reaped: idle connections from anyone (connect, send nothing)
used to stay forever (pjsip's initial timeout is off in a default build) and, 64 of them, filled pjlib's 64
socket slots (a default select ioqueue's; ours is epoll with 1,024), so the next dial failed with PJ_ETOOMANY."""

from __future__ import annotations

import socket

import anyio

from daemon.bridge import LoopBridge
from daemon.sip import CallEnded, SipEngine
from daemon.sip._inbound_tcp import INBOUND_TCP_CAP, Connection, to_reap
from tests.sip.conftest import EventLog, make_config
from tests.support.peers import free_port


def conn(key: int, age: float, busy: bool = False, now: float = 1000.0) -> Connection:
    return Connection(key, now - age, busy)


def test_excess_connections_go_oldest_idle_first_and_busy_ones_stay() -> None:
    conns = [conn(1, 20, busy=True), conn(2, 10), conn(3, 5), conn(4, 1), conn(5, 0.5)]
    assert to_reap(conns, now=1000.0, cap=3, idle_s=30.0) == [2, 3]
    assert to_reap(conns, now=1000.0, cap=5, idle_s=30.0) == []
    # all busy: none is shut, whatever the count
    assert to_reap([conn(k, 1, busy=True) for k in range(9)], now=1000.0, cap=2, idle_s=30.0) == []


def test_idle_connections_go_after_the_idle_time() -> None:
    conns = [conn(1, 31), conn(2, 29), conn(3, 40, busy=True)]
    assert to_reap(conns, now=1000.0, cap=8, idle_s=30.0) == [1]


def connect_many(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        s.connect(("127.0.0.1", port))
        socks.append(s)
    return socks


def closed_by_peer(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


async def test_64_idle_tcp_connections_do_not_stop_the_panel_calling(bridge: LoopBridge) -> None:
    async with SipEngine(make_config(transport="tcp"), bridge) as engine:
        log = EventLog(engine)
        socks = connect_many(engine.sip_port, 64)
        try:
            with anyio.fail_after(10):
                while sum(closed_by_peer(s) for s in socks) < 64 - INBOUND_TCP_CAP:
                    await anyio.sleep(0.05)
            # nothing listens there: the call fails over the network (408/503), not in pjsua
            call = await engine.dial(f"sip:resident@127.0.0.1:{free_port()}", ring_timeout=2)
            ended = await log.wait(CallEnded, call)
            assert ended.code != 0
            # and more connections keep being bounded
            more = connect_many(engine.sip_port, 16)
            socks += more
            with anyio.fail_after(10):
                while sum(closed_by_peer(s) for s in more) < 16 - INBOUND_TCP_CAP:
                    await anyio.sleep(0.05)
            assert engine.fault_counters == (0, 0)
        finally:
            for s in socks:
                s.close()
