"""A fake :class:`~daemon.facade.AppFacade` (events from a real VisitLog) and a broker-side subscriber.

:class:`FakeApp` is injected through ``run_mqtt``'s ``app`` argument. Its events go through the real
:class:`~daemon.visitlog.VisitLog` (masking, subscriber buffers, drop on falling behind) exactly as the
app's do; what it was asked to do is recorded in lists.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from daemon.facade import OpenResult, PressResult, ReloadResult, SelftestRow
from daemon.visitlog import VisitLog

__all__ = ["FakeApp", "LogWaiter", "Received", "Subscriber"]


class FakeApp:
    def __init__(self, buttons: tuple[str, ...] = ("101", "concierge")) -> None:
        self.visit_log = VisitLog(None)
        self.buttons = buttons
        self.opened: list[tuple[str | None, str]] = []
        self.pressed: list[tuple[str, str]] = []
        self.dialed: list[str] = []
        self.hangups = 0
        self.reloads = 0
        self.open_result = OpenResult(True)
        self.energized = False
        self.registered = True
        self.door: str | None = "closed"

    async def aclose(self) -> None:
        await self.visit_log.aclose()  # ends the subscribers' streams (their send sides closed)

    async def __aenter__(self) -> FakeApp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- what tests drive --

    def emit(self, name: str, visit: str = "-", target: str = "", text: str = "", **extra: object) -> None:
        self.visit_log.event(visit, name, target, text, **extra)

    # -- AppFacade --

    def directory_csv(self) -> str:
        return "number,name,residents,codes,strategy,fallback\n"

    def button_names(self) -> list[str]:
        return list(self.buttons)

    def press(self, button: str, *, source: str) -> PressResult:
        self.pressed.append((button, source))
        visit = self.visit_log.start_visit()
        self.emit("BUTTON_PRESSED", visit, button, f"{source}: started")
        return PressResult("started", visit)

    def open_door(self, door: str | None = None, *, by: str) -> OpenResult:
        self.opened.append((door, by))
        if self.open_result.opened:
            self.energized = True
            self.emit("DOOR_OPEN", "-", by, "opened")
        else:
            self.emit("DOOR_OPEN_REFUSED", "-", by, self.open_result.reason)
        return self.open_result

    async def dial(self, uri: str) -> str:
        self.dialed.append(uri)
        return "call-1"

    async def hangup(self) -> dict[str, object]:
        self.hangups += 1
        return {"hung_up": 0, "visit_cancelled": False}

    def status(self) -> dict[str, object]:
        return {
            "panel": "Portão",
            "version": "0.1.0",
            "registration": {"required": True, "active": self.registered},
            "relay": {"energized": self.energized, "blocked": False},
            "door": self.door,
        }

    async def history(self, limit: int) -> list[dict[str, object]]:
        return []

    def events(self) -> Any:
        return self.visit_log.event_dicts()

    async def selftest(self) -> list[SelftestRow]:
        return []

    async def reload(self) -> ReloadResult:
        self.reloads += 1
        return ReloadResult(True, applied=("timing.ring_timeout_seconds",))

    async def wait_visits(self, count: int) -> None:
        raise AssertionError("the MQTT link never waits for visits")


@dataclass(frozen=True)
class Received:
    topic: str
    payload: str
    retain: bool
    at: float = 0.0  # time.perf_counter() on receipt

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """An aiomqtt client on the test's side; :meth:`next` waits (with a timeout) for a matching message."""

    port: int
    topics: tuple[str, ...] = ("#",)
    received: list[Received] = field(default_factory=list)
    client_id: str = ""
    clean: bool = True
    username: str | None = None
    password: str | None = None
    tls_ca: Path | None = None
    _send: MemoryObjectSendStream[Received] | None = None
    _receive: MemoryObjectReceiveStream[Received] | None = None
    _taken: set[int] = field(default_factory=set)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Subscriber]:
        self._send, self._receive = anyio.create_memory_object_stream[Received](100_000)
        client = aiomqtt.Client(
            "127.0.0.1",
            self.port,
            identifier=self.client_id or None,
            clean_session=self.clean,
            username=self.username,
            password=self.password,
            tls_context=None if self.tls_ca is None else ssl.create_default_context(cafile=str(self.tls_ca)),
        )
        async with client, self._send, self._receive, anyio.create_task_group() as tg:
            for topic in self.topics:
                await client.subscribe(topic, qos=1)

            async def pump() -> None:
                assert self._send is not None
                async for m in client.messages:
                    payload = m.payload.decode() if isinstance(m.payload, bytes) else str(m.payload)
                    item = Received(m.topic.value, payload, m.retain, time.perf_counter())
                    self.received.append(item)
                    self._send.send_nowait(item)

            tg.start_soon(pump)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    async def next(self, topic: str, timeout: float = 10.0, *, payload: str | None = None) -> Received:
        """The first message not yet returned on ``topic`` (exact, or a prefix ending in '/'), waiting for it.

        Messages on other topics stay available to later calls: each topic is read in its own order.
        """
        assert self._receive is not None

        def matches(item: Received) -> bool:
            on_topic = item.topic == topic or (topic.endswith("/") and item.topic.startswith(topic))
            return on_topic and (payload is None or item.payload == payload)

        with anyio.fail_after(timeout):
            while True:
                for index, item in enumerate(self.received):
                    if index not in self._taken and matches(item):
                        self._taken.add(index)
                        return item
                await self._receive.receive()  # one more message arrived (it is already in self.received)


class LogWaiter(logging.Handler):
    """A logging handler that sets an event when a record containing ``text`` is logged."""

    def __init__(self, text: str, logger: str = "daemon.mqtt") -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.seen = anyio.Event()
        self.records: list[logging.LogRecord] = []
        self._logger = logging.getLogger(logger)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if self.text in record.getMessage():
            self.seen.set()

    def __enter__(self) -> LogWaiter:
        self._logger.addHandler(self)
        self._logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
