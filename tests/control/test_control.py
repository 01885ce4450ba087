"""The control server over a real Unix socket, with a fake handler injected through serve_control."""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import socket
import stat
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from daemon.control import MAX_LINE_BYTES, serve_control
from daemon.errors import ControlError, SipError

ROUND_TRIPS = [
    ({"cmd": "status"}, ("status", None), {"state": "idle", "sip": {"registered": True}, "uptime_seconds": 12}),
    ({"cmd": "press", "button": "101"}, ("press", "101"), {"visit": "v1", "button": "101"}),
    ({"cmd": "open"}, ("open", None), {"opened": True}),
    ({"cmd": "dial", "uri": "sip:101@pbx"}, ("dial", "sip:101@pbx"), {"call": 1, "uri": "sip:101@pbx"}),
    ({"cmd": "hangup"}, ("hangup", None), {"hung_up": 0}),
    (
        {"cmd": "history", "limit": 2},
        ("history", 2),
        [
            {"visit": "v0", "apartment": "101", "outcome": "opened"},
            {"visit": "v1", "apartment": "101", "outcome": "opened"},
        ],
    ),
    ({"cmd": "history"}, ("history", 20), None),  # default limit
    (
        {"cmd": "selftest"},
        ("selftest", None),
        [{"name": "gpio", "ok": True, "detail": "mock"}, {"name": "sip", "ok": False, "detail": "no route"}],
    ),
    ({"cmd": "reload"}, ("reload", None), {"reloaded": True}),
]


@pytest.mark.parametrize(("request_", "call", "result"), ROUND_TRIPS, ids=lambda v: str(v)[:30])
async def test_every_command_round_trips(
    server: Path, handler: Any, open_client: Any, request_: dict[str, Any], call: tuple[str, Any], result: Any
) -> None:
    async with open_client(server) as client:
        reply = await client.ask(request_)
    assert reply["ok"] is True, reply
    if result is not None:
        assert reply["result"] == result
    assert handler.calls == [call]


async def test_many_requests_on_one_connection(server: Path, handler: Any, open_client: Any) -> None:
    async with open_client(server) as client:
        await client.send_raw(b'{"cmd": "open"}\n\n{"cmd": "hangup"}\n')  # two requests, a blank line between
        assert (await client.read())["result"] == {"opened": True}
        assert (await client.read())["result"] == {"hung_up": 0}
    assert [c[0] for c in handler.calls] == ["open", "hangup"]


BAD = [
    (b"{not json\n", "bad_request", "not valid JSON"),
    (b"\xff\xfe\n", "bad_request", "not valid JSON"),
    (b"[1, 2]\n", "bad_request", "must be a JSON object, got list"),
    (b'"status"\n', "bad_request", "got str"),
    (b"{}\n", "bad_request", 'missing "cmd"'),
    (b'{"cmd": 5}\n', "bad_request", 'missing "cmd"'),
    (b'{"cmd": "explode"}\n', "unknown_command", "unknown command 'explode'"),
    (b'{"cmd": "press"}\n', "bad_request", "missing argument 'button'"),
    (b'{"cmd": "press", "button": 101}\n', "bad_request", "button must be str, got int"),
    (b'{"cmd": "press", "button": "  "}\n', "bad_request", "must not be empty"),
    (b'{"cmd": "dial", "uri": null}\n', "bad_request", "uri must be str"),
    (b'{"cmd": "history", "limit": "20"}\n', "bad_request", "limit must be int, got str"),
    (b'{"cmd": "history", "limit": true}\n', "bad_request", "limit must be int, got bool"),
    (b'{"cmd": "history", "limit": 0}\n', "bad_request", "limit must be 1.."),
    (b'{"cmd": "open", "force": true}\n', "bad_request", "unexpected argument(s) ['force']"),
]


@pytest.mark.parametrize(("line", "code", "message"), BAD, ids=lambda v: str(v)[:30])
async def test_bad_requests_get_json_errors_and_the_connection_survives(
    server: Path, handler: Any, open_client: Any, line: bytes, code: str, message: str
) -> None:
    async with open_client(server) as client:
        await client.send_raw(line)
        reply = await client.read()
        assert reply["ok"] is False
        assert reply["error"]["code"] == code
        assert message in reply["error"]["message"]
        assert (await client.ask({"cmd": "open"}))["ok"] is True  # same connection, still served
    assert handler.calls == [("open", None)]  # the bad request never reached the app


async def test_huge_line_is_refused_and_closed_and_the_server_keeps_serving(server: Path, open_client: Any) -> None:
    # Sent in the background: the server stops reading at the limit, so a blocking send could stall.
    async with open_client(server) as client, anyio.create_task_group() as tg:

        async def flood() -> None:
            with contextlib.suppress(anyio.BrokenResourceError, OSError):
                await client.send_raw(b'{"cmd": "' + b"x" * (MAX_LINE_BYTES * 2) + b'"}\n')

        tg.start_soon(flood)
        reply = await client.read()
        assert reply["error"]["code"] == "too_large"
        assert await client.closed()
    async with open_client(server) as client:
        assert (await client.ask({"cmd": "status"}))["ok"] is True


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (SipError("registrar down", info="408 timeout"), "failed", "registrar down: 408 timeout"),
        (RuntimeError("bug"), "failed", "RuntimeError: bug"),
        (ControlError("door blocked by tamper"), "refused", "door blocked by tamper"),
    ],
)
async def test_handler_raising_gives_an_error_reply(
    server: Path, handler: Any, open_client: Any, exc: Exception, code: str, message: str
) -> None:
    handler.fail["open"] = exc
    async with open_client(server) as client:
        reply = await client.ask({"cmd": "open"})
        assert reply == {"ok": False, "error": {"code": code, "message": message}}
        assert (await client.ask({"cmd": "status"}))["ok"] is True


async def test_a_result_that_is_not_json_gives_failed(server: Path, handler: Any, open_client: Any) -> None:
    handler.status_result = {"level": float("nan"), "since": Path("/x")}
    async with open_client(server) as client:
        reply = await client.ask({"cmd": "status"})
        assert reply["error"]["code"] == "failed"
        assert "not valid JSON" in reply["error"]["message"]
        handler.status_result = {"since": Path("/x")}  # default=str: shown as text, not an error
        assert (await client.ask({"cmd": "status"}))["result"] == {"since": "/x"}


async def test_stopping_while_clients_are_talking_is_clean(short_dir: Path, handler: Any) -> None:
    """Cancel the server in the same loop iteration a client's bytes or hang-up arrive, many times.

    anyio's own UNIX streams make asyncio log InvalidStateError here (which the test plugin turns
    into a failure); this is the regression test for using wait_readable instead.
    """
    path = short_dir / "control.sock"
    for _ in range(20):
        async with anyio.create_task_group() as tg:
            await tg.start(serve_control, path, handler)
            stream = await anyio.connect_unix(path)
            await stream.send(b'{"cmd": "status"}\n{"cmd": "op')
            await stream.aclose()
            tg.cancel_scope.cancel()
        assert not path.exists()


async def test_app_refusal_from_press_is_refused_code(server: Path, open_client: Any) -> None:
    async with open_client(server) as client:
        reply = await client.ask({"cmd": "press", "button": "999"})
    assert reply["error"] == {"code": "refused", "message": "no button named '999'"}


async def test_slow_handler_times_out_without_blocking_others(server: Path, handler: Any, open_client: Any) -> None:
    handler.status_delay = 5.0  # handler_timeout is 1 s in the fixture
    async with open_client(server) as slow, open_client(server) as other:
        await slow.send({"cmd": "status"})
        assert (await other.ask({"cmd": "open"}))["ok"] is True  # answered while status is stuck
        reply = await slow.read()
    assert reply["error"]["code"] == "timeout"


async def test_idle_client_is_dropped(server: Path, open_client: Any) -> None:
    async with open_client(server) as client:
        await client.send_raw(b'{"cmd": "sta')  # a partial line, then silence
        with anyio.fail_after(3):  # idle_timeout is 1 s in the fixture
            assert await client.closed()


async def test_client_count_is_bounded(server: Path, open_client: Any) -> None:
    async with (
        open_client(server) as c1,
        open_client(server) as c2,
        open_client(server) as c3,
        open_client(server) as c4,
    ):
        for c in (c1, c2, c3, c4):  # each answered: each holds one of the 4 slots
            assert (await c.ask({"cmd": "open"}))["ok"] is True
        async with open_client(server) as fifth:
            reply = await fifth.read()
            assert reply["error"]["code"] == "busy"
            assert await fifth.closed()
    async with open_client(server) as again:  # the slots were freed when the four left
        assert (await again.ask({"cmd": "open"}))["ok"] is True


async def test_events_stream_until_the_client_disconnects(server: Path, handler: Any, open_client: Any) -> None:
    async with open_client(server) as client:
        assert await client.ask({"cmd": "events"}) == {"ok": True, "result": "streaming"}
        for i in range(3):
            await handler.event_send.send({"type": "press", "n": i})
        assert [await client.read() for _ in range(3)] == [{"event": {"type": "press", "n": i}} for i in range(3)]
        assert handler.subscribers == 1
    # No further event arrives, yet the server notices the disconnect and unsubscribes.
    with anyio.fail_after(5):
        await handler.unsubscribed.wait()
    assert handler.subscribers == 0


async def test_events_failing_to_subscribe_gives_failed(server: Path, handler: Any, open_client: Any) -> None:
    handler.fail["events"] = RuntimeError("no bus")
    async with open_client(server) as client:
        reply = await client.ask({"cmd": "events"})
        assert reply["error"] == {"code": "failed", "message": "event stream: RuntimeError: no bus"}
    async with open_client(server) as client:
        assert (await client.ask({"cmd": "status"}))["ok"] is True


async def test_peer_uid_is_logged(server: Path, open_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="daemon.control")
    async with open_client(server) as client:
        await client.ask({"cmd": "open"})
    assert f"control: uid {os.getuid()}: open" in caplog.text


# --- the socket file -------------------------------------------------------------------------------------


async def test_socket_mode_is_0660_and_removed_at_stop(short_dir: Path, handler: Any) -> None:
    path = short_dir / "control.sock"
    async with anyio.create_task_group() as tg:
        await tg.start(serve_control, path, handler)
        mode = path.lstat().st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o660
        tg.cancel_scope.cancel()
    assert not path.exists()


async def test_missing_runtime_dir_is_created_private(short_dir: Path, handler: Any) -> None:
    path = short_dir / "a" / "run" / "control.sock"
    async with anyio.create_task_group() as tg:
        await tg.start(serve_control, path, handler)
        assert stat.S_IMODE(path.parent.stat().st_mode) & 0o007 == 0  # others can't even traverse
        tg.cancel_scope.cancel()


async def test_stale_socket_is_replaced(short_dir: Path, handler: Any, open_client: Any) -> None:
    path = short_dir / "control.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a crashed daemon leaves
    async with anyio.create_task_group() as tg:
        await tg.start(serve_control, path, handler)
        async with open_client(path) as client:
            assert (await client.ask({"cmd": "open"}))["ok"] is True
        tg.cancel_scope.cancel()


async def test_refuses_to_start_when_another_daemon_listens(short_dir: Path, handler: Any, open_client: Any) -> None:
    path = short_dir / "control.sock"
    async with anyio.create_task_group() as tg:
        await tg.start(serve_control, path, handler)
        with pytest.raises(ControlError, match="already listening"):
            await serve_control(path, handler)
        async with open_client(path) as client:  # the first daemon kept its socket
            assert (await client.ask({"cmd": "open"}))["ok"] is True
        tg.cancel_scope.cancel()


async def test_refuses_a_path_that_is_not_a_socket(short_dir: Path, handler: Any) -> None:
    path = short_dir / "control.sock"
    path.write_text("precious")
    with pytest.raises(ControlError, match="not a socket"):
        await serve_control(path, handler)
    assert path.read_text() == "precious"


_CONNECT_AS_NOBODY = """
import os, socket, sys
os.setgroups([]); os.setgid({gid}); os.setuid({uid})
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES")
else:
    print("CONNECTED")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another uid")
async def test_other_users_get_eacces(short_dir: Path, handler: Any) -> None:
    nobody = pwd.getpwnam("nobody")
    path = short_dir / "control.sock"
    os.chmod(short_dir, 0o755)  # the directory lets nobody through: only the socket's own 0660 stops it
    async with anyio.create_task_group() as tg:
        await tg.start(serve_control, path, handler)
        code = _CONNECT_AS_NOBODY.format(uid=nobody.pw_uid, gid=nobody.pw_gid)
        result = await anyio.run_process([sys.executable, "-c", code, str(path)], check=True)
        assert result.stdout.decode().strip() == "EACCES"
        # Control: the same user gets in once the socket is world-writable, so the test measures the mode.
        os.chmod(path, 0o666)
        result = await anyio.run_process([sys.executable, "-c", code, str(path)], check=True)
        assert result.stdout.decode().strip() == "CONNECTED"
        tg.cancel_scope.cancel()
