"""A fake AppFacade behind the real AppControl and the real server on a Unix socket, one per test."""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from daemon.control import AppControl, ControlLimits, serve_control
from daemon.errors import SipError
from daemon.facade import AppFacade, OpenResult, PressResult, ReloadResult, SelftestRow

HISTORY_ROW = {
    "visit": "01JDV9",
    "apartment": "101",
    "button": "101",
    "started_at": "2026-11-26T13:05:09+00:00",
    "outcome": "door_opened",
    "answered_by": "sip:101@192.168.10.21",
    "answered_at": "2026-11-26T13:05:15+00:00",
    "door_opened": True,
    "opened_by": "sip:101@192.168.10.21",
    "open_method": "dtmf",
    "ended_at": "2026-11-26T13:05:31+00:00",
    "ring_seconds": 6.1,
    "call_seconds": 16.0,
    "duration_seconds": 22.4,
    "failure": "",
    "extra": {},
}


class FakeApp:
    """An AppFacade that records every call. Fields set by a test change what it answers."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail: dict[str, BaseException] = {}  # method name -> what it raises
        self.buttons = ["101", "concierge"]
        self.press_result = "started"
        self.open_result = OpenResult(True)
        self.reload_result = ReloadResult(True, applied=("timing.ring_timeout_seconds",))
        self.status_result: dict[str, object] = {"state": "idle", "sip": {"registered": True}, "uptime_seconds": 12}
        self.history_rows: list[dict[str, object]] = [dict(HISTORY_ROW)]
        self.history_called = anyio.Event()
        self.history_delay = 0.0  # seconds history() takes: the command timeout's test
        self.event_send, self.event_receive = anyio.create_memory_object_stream[dict[str, object]](10_000)
        self.subscribers = 0
        self.subscribed = anyio.Event()
        self.unsubscribed = anyio.Event()

    def _record(self, name: str, arg: Any = None) -> None:
        self.calls.append((name, arg))
        if name in self.fail:
            raise self.fail[name]

    def directory_csv(self) -> str:
        self._record("directory")
        return "number,name,residents,codes,strategy,fallback\n101,101,sip:101@h,,parallel,\n"

    def button_names(self) -> list[str]:
        return list(self.buttons)

    def press(self, button: str, *, source: str) -> PressResult:
        self._record("press", (button, source))
        return PressResult(self.press_result, "v1")

    def open_door(self, door: str | None = None, *, by: str) -> OpenResult:
        self._record("open", (door, by))
        return self.open_result

    async def dial(self, uri: str) -> str:
        self._record("dial", uri)
        if not uri.startswith("sip:"):
            raise SipError(f"dial {uri}", info="Invalid URI (PJSIP_EINVALIDURI)")
        return "c1"

    async def hangup(self) -> dict[str, object]:
        self._record("hangup")
        return {"hung_up": 0, "visit_cancelled": False}

    def status(self) -> dict[str, object]:
        self._record("status")
        return self.status_result

    async def history(self, limit: int) -> list[dict[str, object]]:
        self._record("history", limit)
        self.history_called.set()
        await anyio.sleep(self.history_delay)
        return self.history_rows[:limit]

    def events(self) -> AbstractAsyncContextManager[AsyncIterator[dict[str, object]]]:
        self._record("events")
        return self._subscription()

    @asynccontextmanager
    async def _subscription(self) -> AsyncIterator[AsyncIterator[dict[str, object]]]:
        self.subscribers += 1
        self.unsubscribed = anyio.Event()
        self.subscribed.set()
        try:
            yield self._events()
        finally:
            self.subscribers -= 1
            self.unsubscribed.set()

    async def _events(self) -> AsyncIterator[dict[str, object]]:
        async for event in self.event_receive:
            yield event

    async def selftest(self) -> list[SelftestRow]:
        self._record("selftest")
        return [SelftestRow("relay at rest", True, "off"), SelftestRow("sip registration", False, "408 timeout")]

    async def reload(self) -> ReloadResult:
        self._record("reload")
        return self.reload_result

    async def wait_visits(self, count: int) -> None:  # the app helper's addition to the facade
        self._record("wait_visits", count)

    def close(self) -> None:
        self.event_send.close()
        self.event_receive.close()


def _is_a_facade(app: FakeApp) -> AppFacade:
    return app  # mypy checks here that the fake keeps up with the facade


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 108 bytes: pytest's tmp_path can be longer than that.
    with tempfile.TemporaryDirectory(prefix="ic-") as d:
        yield Path(d)


@pytest.fixture
def app() -> Iterator[FakeApp]:
    fake = FakeApp()
    yield fake
    fake.close()


TEST_LIMITS = ControlLimits(request_timeout=1.0, command_timeout=1.0, send_timeout=1.0, max_clients=4, follower_queue=8)


@pytest.fixture
def limits() -> ControlLimits:
    return TEST_LIMITS


@pytest.fixture
async def server(short_dir: Path, app: FakeApp, limits: ControlLimits) -> AsyncIterator[Path]:
    path = short_dir / "run" / "control.sock"
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: serve_control(path, AppControl(app), limits=limits, task_status=task_status))
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
        """True when the server closes the connection within 5 s (anything it sends first is kept)."""
        with anyio.fail_after(5):
            try:
                while True:
                    self.buffer += await self.stream.receive()
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
