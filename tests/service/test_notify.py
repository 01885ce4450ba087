"""sd_notify and the watchdog against a real datagram socket the test binds, as systemd would."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from daemon.service import sd_notify, watchdog_interval, watchdog_task


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    with tempfile.TemporaryDirectory(prefix="ic-") as d, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        path = str(Path(d) / "notify")
        sock.bind(path)
        sock.setblocking(False)
        yield sock, path


def drain(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_ready_and_status_reach_the_socket(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    assert sd_notify("READY=1\nSTATUS=ready: 2 apartments", environ={"NOTIFY_SOCKET": path})
    assert sd_notify("STOPPING=1", environ={"NOTIFY_SOCKET": path})
    assert drain(sock) == ["READY=1\nSTATUS=ready: 2 apartments", "STOPPING=1"]


def test_abstract_socket_name() -> None:
    name = f"intercom-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert sd_notify("READY=1", environ={"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(100) == b"READY=1"


@pytest.mark.parametrize("value", ["", "relative/path", "vsock:2:1234"])
def test_no_usable_socket_is_a_quiet_no_op(value: str) -> None:
    assert sd_notify("READY=1", environ={"NOTIFY_SOCKET": value} if value else {}) is False


def test_nobody_listening_is_not_an_error(tmp_path: Path) -> None:
    assert sd_notify("READY=1", environ={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "10000000"}, 10.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}, 10.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env) == expected


async def test_watchdog_task_without_watchdog_returns_at_once() -> None:
    async with anyio.create_task_group() as tg:
        assert await tg.start(lambda task_status: watchdog_task(environ={}, task_status=task_status)) is None


async def test_watchdog_pings_at_half_the_interval_and_stop_when_the_loop_is_blocked(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}  # 0.2 s: a ping every 0.1 s
    async with anyio.create_task_group() as tg:
        interval = await tg.start(lambda task_status: watchdog_task(environ=env, task_status=task_status))
        assert interval == 0.2

        await anyio.sleep(1.0)
        healthy = drain(sock)
        assert set(healthy) == {"WATCHDOG=1"}
        assert 8 <= len(healthy) <= 12, len(healthy)  # ~10 in one second

        # Wedge the loop on purpose, as a blocking call on the loop thread would: three watchdog
        # intervals pass and not one ping is sent, so systemd would kill and restart the daemon.
        drain(sock)
        time.sleep(0.6)  # noqa: ASYNC251 - blocking the loop is the point of this test
        assert drain(sock) == []

        await anyio.sleep(0.5)  # the loop is free again: pings resume
        assert len(drain(sock)) >= 3
        tg.cancel_scope.cancel()
