"""The control server over a real Unix socket, the real AppControl in front of a fake AppFacade.

The fixture's limits (conftest.TEST_LIMITS): 4 clients, 3 of them followers at most, 1 s to send a request,
1 s for a command, 1 s for a send, 8 events queued per follower.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import random
import socket
import stat
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from daemon.control import AppControl, ControlLimits, serve_control
from daemon.control.protocol import MAX_LINE_BYTES
from daemon.errors import ControlError, SipError

ROUND_TRIPS = [
    ({"cmd": "status"}, ("status", None), {"state": "idle", "sip": {"registered": True}, "uptime_seconds": 12}),
    ({"cmd": "press", "button": "101"}, ("press", ("101", f"control socket (uid {os.getuid()})")), None),
    ({"cmd": "open"}, ("open", (None, f"control socket (uid {os.getuid()})")), {"opened": True, "reason": ""}),
    ({"cmd": "dial", "uri": "sip:101@pbx"}, ("dial", "sip:101@pbx"), {"dialed": "sip:101@pbx", "call": "c1"}),
    ({"cmd": "hangup"}, ("hangup", None), {"hung_up": 0, "visit_cancelled": False}),
    ({"cmd": "history", "limit": 2}, ("history", 2), None),
    ({"cmd": "history"}, ("history", 20), None),  # default limit
    ({"cmd": "selftest"}, ("selftest", None), None),
    ({"cmd": "reload"}, ("reload", None), None),
]


@pytest.mark.parametrize(("request_", "call", "result"), ROUND_TRIPS, ids=lambda v: str(v)[:30])
async def test_every_command_round_trips(
    server: Path, app: Any, open_client: Any, request_: dict[str, Any], call: tuple[str, Any], result: Any
) -> None:
    async with open_client(server) as client:
        reply = await client.ask(request_)
    assert reply["ok"] is True, reply
    if result is not None:
        assert reply["result"] == result
    assert app.calls == [call]


async def test_many_requests_on_one_connection(server: Path, app: Any, open_client: Any) -> None:
    async with open_client(server) as client:
        await client.send_raw(b'{"cmd": "open"}\n\n{"cmd": "hangup"}\n')  # two requests, a blank line between
        assert (await client.read())["result"]["opened"] is True
        assert (await client.read())["result"]["hung_up"] == 0
    assert [c[0] for c in app.calls] == ["open", "hangup"]


BAD = [
    (b"{not json\n", "bad_request", "not valid JSON"),
    (b"[1, 2]\n", "bad_request", "must be a JSON object, got array"),
    (b'{"cmd": "explode"}\n', "unknown_command", "unknown command 'explode'"),
    (b'{"cmd": "press", "button": 101}\n', "bad_request", "button must be str, got int"),
    (b'{"cmd": "press", "button": "999"}\n', "refused", "no button named '999'; known: 101, concierge"),
    (b'{"cmd": "open", "force": true}\n', "bad_request", "unexpected argument(s) 'force'"),
    (b"[" * 60_000 + b"\n", "bad_request", "nested deeper than 4 levels"),
    (b'{"cmd": "history", "limit": ' + b"9" * 5000 + b"}\n", "bad_request", "an integer longer than 18 digits"),
]


@pytest.mark.parametrize(("line", "code", "message"), BAD, ids=lambda v: str(v)[:30])
async def test_bad_requests_get_json_errors_and_the_connection_survives(
    server: Path, app: Any, open_client: Any, line: bytes, code: str, message: str
) -> None:
    async with open_client(server) as client:
        await client.send_raw(line)
        reply = await client.read()
        assert reply["ok"] is False
        assert reply["error"]["code"] == code
        assert message in reply["error"]["message"]
        assert (await client.ask({"cmd": "hangup"}))["ok"] is True  # same connection, still served
    assert [c[0] for c in app.calls] == ["hangup"]  # the bad request never reached the app


@pytest.mark.parametrize("limits", [ControlLimits(request_timeout=60.0)])  # refused lines do not extend it
async def test_fuzzed_lines_each_get_one_reply_and_no_traceback(
    server: Path, app: Any, open_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Hostile lines through the socket (the parser's own fuzz is in test_protocol): one reply each, no log error."""
    rng = random.Random(7)
    pieces = [b"[", b"]", b"{", b"}", b'"', b"\\", b":", b",", b"9" * 100, b"\\ud800", b"null", b'"cmd"', b'"status"']
    async with open_client(server) as client:
        for _ in range(300):
            line = b"".join(rng.choices(pieces, k=rng.randrange(1, 400))).replace(b"\n", b"")
            await client.send_raw(line + b"\n")
            if line.strip():
                reply = await client.read()
                assert set(reply) in ({"ok", "error"}, {"ok", "result"}), reply
        assert (await client.ask({"cmd": "hangup"}))["ok"] is True
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


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
async def test_app_raising_gives_an_error_reply(
    server: Path, app: Any, open_client: Any, exc: Exception, code: str, message: str
) -> None:
    app.fail["open"] = exc
    async with open_client(server) as client:
        reply = await client.ask({"cmd": "open"})
        assert reply == {"ok": False, "error": {"code": code, "message": message}}
        assert (await client.ask({"cmd": "status"}))["ok"] is True


async def test_a_result_that_is_not_json_gives_failed(server: Path, app: Any, open_client: Any) -> None:
    app.status_result = {"level": float("nan"), "since": Path("/x")}
    async with open_client(server) as client:
        reply = await client.ask({"cmd": "status"})
        assert reply["error"]["code"] == "failed"
        assert "not valid JSON" in reply["error"]["message"]
        app.status_result = {"since": Path("/x")}  # default=str: shown as text, not an error
        assert (await client.ask({"cmd": "status"}))["result"] == {"since": "/x"}


async def test_stopping_while_clients_are_talking_is_clean(short_dir: Path, app: Any) -> None:
    """Cancel the server in the same loop iteration a client's bytes or hang-up arrive, many times.

    anyio's own UNIX streams make asyncio log InvalidStateError here (which the test plugin turns
    into a failure); this is the regression test for using wait_readable instead.
    """
    path = short_dir / "control.sock"
    for _ in range(20):
        async with anyio.create_task_group() as tg:
            await tg.start(serve_control, path, AppControl(app))
            stream = await anyio.connect_unix(path)
            await stream.send(b'{"cmd": "status"}\n{"cmd": "op')
            await stream.aclose()
            tg.cancel_scope.cancel()
        assert not path.exists()


async def test_slow_command_times_out_without_blocking_others(server: Path, app: Any, open_client: Any) -> None:
    app.history_delay = 5.0  # command_timeout is 1 s
    async with open_client(server) as slow, open_client(server) as other:
        await slow.send({"cmd": "history"})
        assert (await other.ask({"cmd": "open"}))["ok"] is True  # answered while history is stuck
        reply = await slow.read()
    assert reply["error"] == {"code": "timeout", "message": "history did not finish in 1 s"}


# --- who may hold a connection, and for how long ---------------------------------------------------------


async def test_a_client_that_sends_no_full_request_is_told_and_dropped(server: Path, open_client: Any) -> None:
    async with open_client(server) as client:
        await client.send_raw(b'{"cmd": "sta')  # a partial line, then silence
        with anyio.fail_after(3):  # request_timeout is 1 s
            reply = await client.read()
            assert await client.closed()
    assert reply["error"]["code"] == "timeout" and "no full request within 1 s" in reply["error"]["message"]


async def test_blank_lines_and_refused_lines_do_not_extend_the_deadline(server: Path, open_client: Any) -> None:
    async with open_client(server) as client:
        start = anyio.current_time()
        with anyio.fail_after(3):
            while True:  # trickle blank and bad lines until the server gives up on us
                with contextlib.suppress(anyio.BrokenResourceError):  # it may close between our read and send
                    await client.send_raw(b'\n"not a request"\n')
                reply = await client.read()
                if reply["error"]["code"] == "timeout":
                    break
                assert reply["error"]["code"] == "bad_request"
            assert await client.closed()
    assert anyio.current_time() - start < 2.5  # dropped at about 1 s despite a line every few ms


@pytest.mark.parametrize("limits", [ControlLimits(max_clients=4, request_timeout=2.0, idle_grace=60.0)])
async def test_idle_clients_fill_the_slots_only_until_their_deadline(server: Path, open_client: Any) -> None:
    """The probe: 16 idle clients denied service for ~60 s. Here 4 (the limit), none evictable, for 2 s at most."""
    async with contextlib.AsyncExitStack() as stack:
        idle = [await stack.enter_async_context(open_client(server)) for _ in range(4)]
        async with open_client(server) as refused:
            reply = await refused.read()
            assert reply["error"] == {"code": "busy", "message": "too many clients (max 4)"}
            assert await refused.closed()
        with anyio.fail_after(5):
            for client in idle:  # each is dropped once its request deadline passes
                assert await client.closed()
        async with open_client(server) as served:
            assert (await served.ask({"cmd": "status"}))["ok"] is True


HELD = ControlLimits(max_clients=4, request_timeout=60.0, idle_grace=60.0)  # idle slots held however slow we are


@pytest.mark.parametrize("limits", [HELD])
async def test_busy_refusals_are_logged_sparingly(
    server: Path, open_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(4):
            await stack.enter_async_context(open_client(server))
        for _ in range(30):  # a connect loop: every one answered, not every one in the journal
            async with open_client(server) as refused:
                assert (await refused.read())["error"]["code"] == "busy"
    refusals = [r for r in caplog.records if "refusing" in r.getMessage()]
    assert len(refusals) == 1, [r.getMessage() for r in refusals]


@pytest.mark.parametrize("limits", [ControlLimits(max_clients=4, request_timeout=60.0, idle_grace=0.0)])
async def test_a_newcomer_takes_the_slot_of_the_longest_idle_connection(server: Path, open_client: Any) -> None:
    """Idle connections reopened as fast as they are dropped cannot keep a command out either."""
    async with contextlib.AsyncExitStack() as stack:
        idle = [await stack.enter_async_context(open_client(server)) for _ in range(4)]
        for _ in range(3):  # each newcomer is served at once, in the slot of the oldest idle connection
            newcomer = await stack.enter_async_context(open_client(server))  # and stays: no slot is freed
            assert (await newcomer.ask({"cmd": "status"}))["ok"] is True
        for evicted in idle[:3]:
            reply = await evicted.read()
            assert reply["error"] == {"code": "timeout", "message": "closed to make room: send a request on connecting"}
            assert await evicted.closed()
        assert (await idle[3].ask({"cmd": "status"}))["ok"] is True  # the youngest kept its slot


async def test_busy_when_no_one_is_idle(server: Path, app: Any, open_client: Any) -> None:
    """Followers and commands in progress are never evicted: a newcomer is told busy instead."""
    app.history_delay = 5.0
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(3):
            follower = await stack.enter_async_context(open_client(server))
            assert await follower.ask({"cmd": "events"}) == {"ok": True, "result": "streaming"}
        working = await stack.enter_async_context(open_client(server))
        await working.send({"cmd": "history"})  # in progress for up to the 1 s command timeout
        with anyio.fail_after(5):
            await app.history_called.wait()  # the command has reached the app: its slot is not idle
        async with open_client(server) as refused:
            assert (await refused.read())["error"] == {"code": "busy", "message": "too many clients (max 4)"}
        assert (await working.read())["error"]["code"] == "timeout"


async def test_followers_cannot_take_the_last_slot(server: Path, app: Any, open_client: Any) -> None:
    async with contextlib.AsyncExitStack() as stack:
        followers = [await stack.enter_async_context(open_client(server)) for _ in range(3)]
        for follower in followers:
            assert await follower.ask({"cmd": "events"}) == {"ok": True, "result": "streaming"}
        async with open_client(server) as fourth:
            busy = await fourth.ask({"cmd": "events"})
            assert busy["error"] == {"code": "busy", "message": "too many event followers (max 3)"}
            assert await fourth.closed()  # at once, not at its request deadline: the slot is free again
        async with open_client(server) as command:  # the reserved slot serves commands
            assert (await command.ask({"cmd": "status"}))["ok"] is True
            assert (await command.ask({"cmd": "hangup"}))["ok"] is True
        for _ in followers:  # one event each (the fake's subscribers share one stream): none was dropped as idle
            await app.event_send.send({"event": "PING"})
        for follower in followers:
            assert (await follower.read())["event"] == {"event": "PING"}
        assert app.subscribers == 3


async def test_a_follower_that_never_reads_is_dropped_and_unsubscribed(
    server: Path, app: Any, open_client: Any
) -> None:
    async with open_client(server) as follower:
        assert await follower.ask({"cmd": "events"}) == {"ok": True, "result": "streaming"}
        for i in range(2000):  # ~2 MB: more than the socket buffer and the 8-event queue hold
            app.event_send.send_nowait({"event": "BIG", "n": i, "pad": "x" * 1000})
        with anyio.fail_after(5):
            await app.unsubscribed.wait()
        assert app.subscribers == 0
    async with open_client(server) as again:  # its slot is free again
        assert await again.ask({"cmd": "events"}) == {"ok": True, "result": "streaming"}


async def test_a_follower_that_falls_behind_is_told_then_closed(server: Path, app: Any, open_client: Any) -> None:
    limits = ControlLimits(send_timeout=10.0, follower_queue=8)  # long enough to be read late: too_slow decides
    async with anyio.create_task_group() as tg:
        path = server.parent / "slow.sock"
        await tg.start(lambda task_status: serve_control(path, AppControl(app), limits=limits, task_status=task_status))
        async with open_client(path) as follower:
            assert await follower.ask({"cmd": "events"}) == {"ok": True, "result": "streaming"}
            for i in range(400):  # 400 x 2 KB: the writer stalls on the full socket, the queue overflows
                app.event_send.send_nowait({"event": "BIG", "n": i, "pad": "x" * 2000})
            with anyio.fail_after(5):
                await app.unsubscribed.wait()  # the pump gave up on it: the subscription is closed at once
            assert await follower.closed()  # now read it all
        lines = [json.loads(line) for line in follower.buffer.splitlines()]
        tg.cancel_scope.cancel()
    events = [line["event"]["n"] for line in lines[:-1]]
    assert events == list(range(len(events))) and 8 < len(events) < 400  # in order, whole lines, then cut
    assert lines[-1]["error"] == {"code": "too_slow", "message": "fell 8 events behind and was disconnected"}


async def test_events_stream_until_the_client_disconnects(server: Path, app: Any, open_client: Any) -> None:
    async with open_client(server) as client:
        assert await client.ask({"cmd": "events"}) == {"ok": True, "result": "streaming"}
        for i in range(3):
            await app.event_send.send({"event": "PRESS", "n": i})
        assert [await client.read() for _ in range(3)] == [{"event": {"event": "PRESS", "n": i}} for i in range(3)]
        assert app.subscribers == 1
    # No further event arrives, yet the server notices the disconnect and unsubscribes.
    with anyio.fail_after(5):
        await app.unsubscribed.wait()
    assert app.subscribers == 0


async def test_the_end_of_the_event_source_is_told(server: Path, app: Any, open_client: Any) -> None:
    async with open_client(server) as client:
        assert await client.ask({"cmd": "events"}) == {"ok": True, "result": "streaming"}
        await app.event_send.send({"event": "LAST"})
        app.event_send.close()  # the app stops
        assert await client.read() == {"event": {"event": "LAST"}}
        assert (await client.read())["error"]["code"] == "ended"
        assert await client.closed()


async def test_events_failing_to_subscribe_gives_failed(server: Path, app: Any, open_client: Any) -> None:
    app.fail["events"] = RuntimeError("no bus")
    async with open_client(server) as client:
        reply = await client.ask({"cmd": "events"})
        assert reply["error"] == {"code": "failed", "message": "event stream: RuntimeError: no bus"}
    async with open_client(server) as client:
        assert (await client.ask({"cmd": "status"}))["ok"] is True


async def test_peer_uid_is_logged(server: Path, open_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="daemon.control")
    async with open_client(server) as client:
        await client.ask({"cmd": "open"})
    assert f"control: uid {os.getuid()}: OpenRequest(door=None)" in caplog.text


def test_limits_are_validated() -> None:
    with pytest.raises(ControlError, match="request_timeout"):
        ControlLimits(request_timeout=float("inf"))
    with pytest.raises(ControlError, match="reserved_for_commands"):
        ControlLimits(max_clients=2, reserved_for_commands=2)


# --- the socket file -------------------------------------------------------------------------------------


async def test_socket_mode_is_0660_and_removed_at_stop(short_dir: Path, app: Any) -> None:
    path = short_dir / "control.sock"
    async with anyio.create_task_group() as tg:
        await tg.start(serve_control, path, AppControl(app))
        mode = path.lstat().st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o660
        tg.cancel_scope.cancel()
    assert not path.exists()


async def test_missing_runtime_dir_is_created_private(short_dir: Path, app: Any) -> None:
    path = short_dir / "a" / "run" / "control.sock"
    async with anyio.create_task_group() as tg:
        await tg.start(serve_control, path, AppControl(app))
        assert stat.S_IMODE(path.parent.stat().st_mode) & 0o007 == 0  # others can't even traverse
        tg.cancel_scope.cancel()


async def test_stale_socket_is_replaced(short_dir: Path, app: Any, open_client: Any) -> None:
    path = short_dir / "control.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a crashed daemon leaves
    async with anyio.create_task_group() as tg:
        await tg.start(serve_control, path, AppControl(app))
        async with open_client(path) as client:
            assert (await client.ask({"cmd": "open"}))["ok"] is True
        tg.cancel_scope.cancel()


async def test_refuses_to_start_when_another_daemon_listens(short_dir: Path, app: Any, open_client: Any) -> None:
    path = short_dir / "control.sock"
    async with anyio.create_task_group() as tg:
        await tg.start(serve_control, path, AppControl(app))
        with pytest.raises(ControlError, match="already listening"):
            await serve_control(path, AppControl(app))
        async with open_client(path) as client:  # the first daemon kept its socket
            assert (await client.ask({"cmd": "open"}))["ok"] is True
        tg.cancel_scope.cancel()


async def test_refuses_a_path_that_is_not_a_socket(short_dir: Path, app: Any) -> None:
    path = short_dir / "control.sock"
    path.write_text("precious")
    with pytest.raises(ControlError, match="not a socket"):
        await serve_control(path, AppControl(app))
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
async def test_other_users_get_eacces(short_dir: Path, app: Any) -> None:
    nobody = pwd.getpwnam("nobody")
    path = short_dir / "control.sock"
    os.chmod(short_dir, 0o755)  # the directory lets nobody through: only the socket's own 0660 stops it
    async with anyio.create_task_group() as tg:
        await tg.start(serve_control, path, AppControl(app))
        code = _CONNECT_AS_NOBODY.format(uid=nobody.pw_uid, gid=nobody.pw_gid)
        result = await anyio.run_process([sys.executable, "-c", code, str(path)], check=True)
        assert result.stdout.decode().strip() == "EACCES"
        # Control: the same user gets in once the socket is world-writable, so the test measures the mode.
        os.chmod(path, 0o666)
        result = await anyio.run_process([sys.executable, "-c", code, str(path)], check=True)
        assert result.stdout.decode().strip() == "CONNECTED"
        tg.cancel_scope.cancel()
