"""A fake ControlHandler injected through serve_control's argument, and a running server per test."""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from daemon.control import ControlLimits, serve_control
from daemon.errors import ControlError, SipError


class FakeHandler:
    """Records calls; ``fail`` makes the named command raise; ``events_sent`` feeds the event stream."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail: dict[str, BaseException] = {}
        self.event_send, self.event_receive = anyio.create_memory_object_stream[dict[str, Any]](100)
        self.subscribers = 0
        self.unsubscribed = anyio.Event()
        self.subscribed = anyio.Event()
        self.status_delay = 0.0
        self.status_result: Any = None

    def _record(self, name: str, arg: Any = None) -> None:
        self.calls.append((name, arg))
        if name in self.fail:
            raise self.fail[name]

    async def status(self) -> dict[str, Any]:
        self._record("status")
        await anyio.sleep(self.status_delay)
        if self.status_result is not None:
            return self.status_result  # type: ignore[no-any-return]
        return {"state": "idle", "sip": {"registered": True}, "uptime_seconds": 12}

    async def press(self, button: str) -> dict[str, Any]:
        self._record("press", button)
        if button == "999":
            raise ControlError("no button named '999'")
        return {"visit": "v1", "button": button}

    async def open_door(self) -> dict[str, Any]:
        self._record("open")
        return {"opened": True}

    async def dial(self, uri: str) -> dict[str, Any]:
        self._record("dial", uri)
        return {"call": 1, "uri": uri}

    async def hangup(self) -> dict[str, Any]:
        self._record("hangup")
        return {"hung_up": 0}

    async def history(self, limit: int) -> list[dict[str, Any]]:
        self._record("history", limit)
        return [{"visit": f"v{i}", "apartment": "101", "outcome": "opened"} for i in range(min(limit, 3))]

    @asynccontextmanager
    async def events(self) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        self._record("events")
        self.subscribers += 1
        self.subscribed.set()
        try:
            yield self._events()
        finally:
            self.subscribers -= 1
            self.unsubscribed.set()

    async def _events(self) -> AsyncIterator[dict[str, Any]]:
        async for event in self.event_receive:
            yield event

    def close(self) -> None:
        self.event_send.close()
        self.event_receive.close()

    async def selftest(self) -> list[dict[str, Any]]:
        self._record("selftest")
        return [{"name": "gpio", "ok": True, "detail": "mock"}, {"name": "sip", "ok": False, "detail": "no route"}]

    async def reload(self) -> dict[str, Any]:
        self._record("reload")
        if "reload" not in self.fail:
            return {"reloaded": True}
        raise SipError("unreachable")


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 108 bytes: pytest's tmp_path can be longer than that.
    with tempfile.TemporaryDirectory(prefix="ic-") as d:
        yield Path(d)


@pytest.fixture
def handler() -> Iterator[FakeHandler]:
    fake = FakeHandler()
    yield fake
    fake.close()


@pytest.fixture
async def server(short_dir: Path, handler: FakeHandler) -> AsyncIterator[Path]:
    path = short_dir / "run" / "control.sock"
    limits = ControlLimits(idle_timeout=1.0, handler_timeout=1.0, send_timeout=1.0, max_clients=4)
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: serve_control(path, handler, limits=limits, task_status=task_status))
        yield path
        tg.cancel_scope.cancel()


class Client:
    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)

    async def send(self, request: Any) -> None:
        await self.send_raw(json.dumps(request).encode() + b"\n")

    async def read(self) -> dict[str, Any]:
        with anyio.fail_after(5):
            while b"\n" not in self.buffer:
                self.buffer += await self.stream.receive()
        line, self.buffer = self.buffer.split(b"\n", 1)
        reply = json.loads(line)
        assert isinstance(reply, dict)
        return reply

    async def ask(self, request: Any) -> dict[str, Any]:
        await self.send(request)
        return await self.read()

    async def closed(self) -> bool:
        """True when the server closes the connection within 5 s."""
        with anyio.fail_after(5):
            try:
                while True:
                    await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return True


@asynccontextmanager
async def connect(path: Path) -> AsyncIterator[Client]:
    with anyio.fail_after(5):
        stream = await anyio.connect_unix(path)
    async with stream:
        yield Client(stream)


@pytest.fixture
def open_client() -> Any:
    """``async with open_client(path) as client``: conftest is not importable under --import-mode=importlib."""
    return connect
