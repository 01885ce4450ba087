"""intercomctl against a real control server (fake handler): in-process main(argv) and as a subprocess."""

from __future__ import annotations

import io
import json
import os
import pwd
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from daemon import ctl

pytestmark = pytest.mark.timeout(60)
REPO = Path(__file__).resolve().parents[2]


async def run_ctl(*argv: str) -> tuple[int, str, str]:
    """main(argv) in a worker thread: it is a blocking client, and the server needs the loop meanwhile."""
    out, err = io.StringIO(), io.StringIO()
    with anyio.fail_after(20):
        status = await anyio.to_thread.run_sync(lambda: ctl.main(list(argv), out=out, err=err))
    return status, out.getvalue(), err.getvalue()


async def test_status_human_is_aligned_key_value_lines(server: Path) -> None:
    status, out, _ = await run_ctl("--socket", str(server), "status")
    assert status == 0
    assert out.splitlines() == [
        "state:          idle",
        "sip.registered: yes",
        "uptime_seconds: 12",
    ]


async def test_status_json_is_the_raw_result(server: Path) -> None:
    status, out, _ = await run_ctl("--socket", str(server), "status", "--json")
    assert status == 0
    assert json.loads(out) == {"state": "idle", "sip": {"registered": True}, "uptime_seconds": 12}


async def test_history_table_and_limit(server: Path, handler: Any) -> None:
    status, out, _ = await run_ctl("--socket", str(server), "history", "--limit", "2")
    assert status == 0
    assert handler.calls == [("history", 2)]
    assert out.splitlines() == [
        "VISIT  APARTMENT  OUTCOME",
        "v0     101        opened",
        "v1     101        opened",
    ]
    status, out, _ = await run_ctl("--socket", str(server), "history", "--json")
    assert json.loads(out)[0] == {"visit": "v0", "apartment": "101", "outcome": "opened"}


async def test_selftest_table_and_exit_status(server: Path, handler: Any) -> None:
    status, out, _ = await run_ctl("--socket", str(server), "selftest")
    assert status == 1  # the fake's "sip" check fails
    assert out.splitlines() == [
        "RESULT  CHECK  DETAIL",
        "PASS    gpio   mock",
        "FAIL    sip    no route",
    ]
    status, out, _ = await run_ctl("--socket", str(server), "selftest", "--json")
    assert status == 1
    assert [c["ok"] for c in json.loads(out)] == [True, False]


def test_selftest_accepts_check_and_passed_keys() -> None:
    out = io.StringIO()
    rows = [{"check": "relay", "passed": True, "detail": "pulsed"}, {"check": "speaker", "passed": False}]
    assert ctl.print_selftest(rows, out) is False
    assert out.getvalue().splitlines() == ["RESULT  CHECK    DETAIL", "PASS    relay    pulsed", "FAIL    speaker"]


def test_visit_log_events_print_time_and_name_first() -> None:
    out = io.StringIO()
    ctl.print_event(
        {
            "target": "sip:101@pbx",
            "text": "",
            "timestamp": "2025-01-01T12:00:00",
            "elapsed_seconds": 1.5,
            "visit": "v1",
            "name": "RINGING",
        },
        out,
    )
    assert out.getvalue() == "2025-01-01T12:00:00 RINGING target=sip:101@pbx text= elapsed_seconds=1.5 visit=v1\n"


@pytest.mark.parametrize(
    ("argv", "call", "line"),
    [
        (["press", "101"], ("press", "101"), "visit:  v1"),
        (["open"], ("open", None), "opened: yes"),
        (["dial", "sip:101@pbx"], ("dial", "sip:101@pbx"), "uri:  sip:101@pbx"),
        (["hangup"], ("hangup", None), "hung_up: 0"),
        (["reload"], ("reload", None), "reloaded: yes"),
    ],
)
async def test_simple_commands(server: Path, handler: Any, argv: list[str], call: tuple[str, Any], line: str) -> None:
    status, out, _ = await run_ctl("--socket", str(server), *argv)
    assert status == 0
    assert handler.calls == [call]
    assert line in out.splitlines()


async def test_refused_command_exits_1_with_the_message(server: Path) -> None:
    status, out, err = await run_ctl("--socket", str(server), "press", "999")
    assert (status, out) == (1, "")
    assert err == "intercomctl: refused: no button named '999'\n"


async def test_daemon_not_running_exits_69(short_dir: Path) -> None:
    status, _, err = await run_ctl("--socket", str(short_dir / "control.sock"), "status")
    assert status == ctl.EX_UNAVAILABLE == 69
    assert "intercomd is not running" in err


async def test_stale_socket_exits_69(short_dir: Path) -> None:
    path = short_dir / "control.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
    status, _, err = await run_ctl("--socket", str(path), "status")
    assert status == 69
    assert "Connection refused" in err


async def test_permission_denied_exits_77(server: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores file modes; the subprocess test below covers EACCES as nobody")
    os.chmod(server, 0)
    status, _, err = await run_ctl("--socket", str(server), "status")
    assert status == 77
    assert "permission denied" in err


async def test_events_follow_prints_each_event(server: Path, handler: Any) -> None:
    out = io.StringIO()
    got_two = threading.Event()

    class Tee(io.StringIO):
        def flush(self) -> None:
            out.write(self.getvalue())
            self.seek(0)
            self.truncate()
            if out.getvalue().count("\n") >= 2:
                got_two.set()

    tee = Tee()

    def follow() -> int:
        return ctl.main(["--socket", str(server), "events", "--follow"], out=tee, err=io.StringIO())

    async with anyio.create_task_group() as tg:
        result: list[int] = []

        async def run() -> None:
            result.append(await anyio.to_thread.run_sync(follow, abandon_on_cancel=True))

        tg.start_soon(run)
        with anyio.fail_after(5):
            await handler.subscribed.wait()
        await handler.event_send.send({"time": "12:00:00", "type": "press", "button": "101"})
        await handler.event_send.send({"time": "12:00:01", "type": "door", "open": True})
        with anyio.fail_after(5):
            await anyio.to_thread.run_sync(got_two.wait)
        handler.event_send.close()  # the stream ends: the server closes, ctl reports it
    assert out.getvalue().splitlines() == ["12:00:00 press button=101", "12:00:01 door open=yes"]
    assert result == [69]  # the daemon went away mid-follow


# --- as a subprocess -------------------------------------------------------------------------------------

_AS_USER = """
import os, sys
from daemon import ctl  # imported as root: nobody cannot read root's Python installation
ctl._parser().parse_args(sys.argv[1:])  # warms argparse's lazy imports (locale, gettext) while still root
os.setgroups([]); os.setgid({gid}); os.setuid({uid})
raise SystemExit(ctl.main(sys.argv[1:]))
"""


async def run_process(*argv: str, user: str | None = None) -> tuple[int, str, str]:
    if user is None:
        cmd = [sys.executable, "-m", "daemon.ctl", *argv]
    else:
        pw = pwd.getpwnam(user)
        cmd = [sys.executable, "-c", _AS_USER.format(uid=pw.pw_uid, gid=pw.pw_gid), *argv]
    with anyio.fail_after(30):
        result = await anyio.run_process(cmd, check=False, cwd=REPO)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def test_subprocess_status_and_json(server: Path) -> None:
    status, out, err = await run_process("--socket", str(server), "status")
    assert (status, err) == (0, "")
    assert "sip.registered: yes" in out
    status, out, _ = await run_process("--socket", str(server), "selftest", "--json")
    assert status == 1
    assert len(json.loads(out)) == 2


async def test_subprocess_not_running_exits_69(short_dir: Path) -> None:
    status, out, err = await run_process("--socket", str(short_dir / "nope.sock"), "open")
    assert (status, out) == (69, "")
    assert "not running" in err


async def test_subprocess_usage_error_exits_2(short_dir: Path) -> None:
    status, _, err = await run_process("--socket", str(short_dir / "nope.sock"), "frobnicate")
    assert status == 2
    assert "invalid choice" in err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the client as another user")
async def test_subprocess_as_another_user_exits_77(server: Path, short_dir: Path) -> None:
    os.chmod(short_dir, 0o755)  # let nobody reach the socket: its own 0660 mode is what must stop it
    os.chmod(server.parent, 0o755)
    status, _, err = await run_process("--socket", str(server), "status", user="nobody")
    assert status == 77, err
    assert "permission denied" in err
