"""Nothing in the MQTT path slows the producer (the visit): a subscriber that never reads, a frozen broker."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import anyio.lowlevel

from daemon.mqtt import MqttLink
from tests.mqtt.broker import Mosquitto
from tests.mqtt.fakes import FakeApp, Subscriber
from tests.mqtt.harness import link_config, running_link, until

PREFIX = "intercom/test"
EVENTS = 2000
# One VisitLog.event() call, the visit's side of publishing: ~20 us typical. A wait on the broker would
# take a publish acknowledgement (>= 100 us over loopback) per event, or the link's timeout (1 s here)
# with a frozen broker. The bound is loose because this machine is shared: a preemption once took 21 ms.
MAX_EMIT_SECONDS = 0.1


def _packet(kind: int, body: bytes) -> bytes:
    assert len(body) < 128
    return bytes([kind, len(body)]) + body


def _string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


@contextmanager
def stalled_subscriber(port: int, topic: str) -> Iterator[socket.socket]:
    """An MQTT 3.1.1 client that subscribes at QoS 1 and then never reads a byte (a tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.connect(("127.0.0.1", port))
    connect = _string("MQTT") + bytes([4, 0x02, 0, 60]) + _string("stalled")
    sock.sendall(_packet(0x10, connect) + _packet(0x82, (1).to_bytes(2, "big") + _string(topic) + bytes([1])))
    try:
        yield sock
    finally:
        sock.close()


async def _emit_visits(app: FakeApp, count: int, *, burst: int = 100, link: MqttLink | None = None) -> list[float]:
    """Emit ``count`` presses, one per turn of the loop, in bursts far denser than any visit; each call's time.

    With ``link``, each burst waits until the link has sent the previous one: the link's throughput (about
    1,000 events/s here) is not what is measured, the producer's time is.
    """
    durations: list[float] = []
    for i in range(count):
        started = time.perf_counter()
        app.emit("BUTTON_PRESSED", f"v{i:05}", "101", "started")
        durations.append(time.perf_counter() - started)
        await anyio.lowlevel.checkpoint()
        if link is not None and i % burst == burst - 1:
            await until(lambda: link.health().queued == 0, timeout=30)
    return durations


async def test_a_subscriber_that_never_reads_does_not_delay_the_producer(broker: Mosquitto, app: FakeApp) -> None:
    async with (
        Subscriber(broker.port, (f"{PREFIX}/#",)).running() as sub,
        running_link(link_config(broker.port), app) as link,
    ):
        await sub.next(f"{PREFIX}/availability", payload="online")
        with stalled_subscriber(broker.port, f"{PREFIX}/#"):
            durations = await _emit_visits(app, EVENTS, link=link)
            await until(lambda: sum(m.topic == f"{PREFIX}/event/doorbell/101" for m in sub.received) >= EVENTS)
        assert max(durations) < MAX_EMIT_SECONDS, f"slowest emit {max(durations) * 1000:.1f} ms"
        assert link.stream_restarts == 0  # the link's consumer never fell behind the app's event stream
        assert link.health().dropped == 0
        visits = [m.json()["visit"] for m in sub.received if m.topic == f"{PREFIX}/event/doorbell/101"]
        assert visits == [f"v{i:05}" for i in range(EVENTS)]


async def test_a_frozen_broker_does_not_delay_the_producer(broker: Mosquitto, app: FakeApp) -> None:
    async with running_link(link_config(broker.port, timeout_seconds=1.0), app) as link:
        await until(lambda: link.health().connected)
        broker.pause()  # SIGSTOP: connections stay open, nothing is acknowledged
        try:
            durations = await _emit_visits(app, 500)
            await until(lambda: link.health().queued >= 499)
            assert max(durations) < MAX_EMIT_SECONDS, f"slowest emit {max(durations) * 1000:.1f} ms"
            assert link.stream_restarts == 0
        finally:
            broker.resume()
        await until(lambda: link.health().connected and link.health().queued == 0, timeout=60)


async def test_only_aiomqtts_late_write_registration_is_swallowed() -> None:
    """The race seen once under load: add_writer on a socket the broker's disconnect already closed."""
    import asyncio
    import errno

    from daemon.mqtt.link import _StaleSocketWriter

    loop = asyncio.get_running_loop()
    seen: list[dict[str, object]] = []
    before = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        hook = _StaleSocketWriter.install()
        handle = asyncio.Handle(loop.add_writer, (26, print), loop)  # as call_soon_threadsafe made it (not run)
        hook._handle(loop, {"exception": OSError(errno.EBADF, "Bad file descriptor"), "handle": handle})
        assert seen == []  # swallowed: the connection is gone, the link reconnects
        other = {"exception": OSError(errno.EPIPE, "Broken pipe"), "handle": handle}
        hook._handle(loop, other)
        hook._handle(loop, {"exception": ValueError("a bug"), "message": "elsewhere"})
        assert len(seen) == 2 and seen[0] is other  # everything else reaches the handler that was there
        hook.remove()
        assert loop.get_exception_handler() is not hook._handle
    finally:
        loop.set_exception_handler(before)
