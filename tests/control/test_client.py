"""intercomctl against the real server (fake app), against scripted misbehaving daemons, and as a subprocess."""

from __future__ import annotations

import io
import json
import os
import pwd
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest

from daemon.control import ControlLimits
from daemon.control import client as ctl
from daemon.control.client import Exit
from daemon.control.display import print_event, print_history, print_reload, print_selftest
from daemon.facade import OpenResult, ReloadResult
from tests.control.conftest import HISTORY_ROW

pytestmark = pytest.mark.timeout(60)
REPO = Path(__file__).resolve().parents[2]
BRASILIA = timezone(timedelta(hours=-3))
NOENT = os.strerror(2)  # "No such file or directory"


async def run_ctl(*argv: str) -> tuple[int, str, str]:
    """main(argv) in a worker thread: it is a blocking client, and the server needs the loop meanwhile."""
    out, err = io.StringIO(), io.StringIO()
    with anyio.fail_after(20):
        status = await anyio.to_thread.run_sync(lambda: ctl.main(list(argv), out=out, err=err))
    return status, out.getvalue(), err.getvalue()


async def test_status_human_is_aligned_key_value_lines(server: Path) -> None:
    status, out, _ = await run_ctl("--socket", str(server), "status")
    assert status == 0
    assert out.splitlines() == ["state:          idle", "sip.registered: yes", "uptime_seconds: 12"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["status"], {"state": "idle", "sip": {"registered": True}, "uptime_seconds": 12}),
        (["press", "101"], {"button": "101", "result": "started", "visit": "v1"}),
        (["open"], {"opened": True, "reason": ""}),
        (["dial", "sip:101@pbx"], {"dialed": "sip:101@pbx", "call": "c1"}),
        (["hangup"], {"hung_up": 0, "visit_cancelled": False}),
        (["history", "--limit", "1"], [HISTORY_ROW]),
        (["reload"], ReloadResult(True, applied=("timing.ring_timeout_seconds",)).as_dict()),
    ],
)
async def test_every_command_has_json(server: Path, argv: list[str], expected: Any) -> None:
    status, out, err = await run_ctl("--socket", str(server), *argv, "--json")
    assert (status, err) == (0, "")
    assert json.loads(out) == expected


async def test_press_prints_what_happened_and_exits_1_when_refused(server: Path, app: Any) -> None:
    status, out, _ = await run_ctl("--socket", str(server), "press", "101")
    assert status == 0
    assert out.splitlines() == ["button: 101", "result: started", "visit:  v1"]
    app.press_result = "refused: another apartment's visit is in progress"
    status, out, _ = await run_ctl("--socket", str(server), "press", "concierge", "--json")
    assert status == Exit.FAILED
    assert json.loads(out)["result"].startswith("refused")
    status, out, err = await run_ctl("--socket", str(server), "press", "999")
    assert (status, out) == (1, "")
    assert err == "intercomctl: refused: no button named '999'; known: 101, concierge\n"


async def test_open_that_did_not_open_says_why_and_exits_1(server: Path, app: Any) -> None:
    status, out, _ = await run_ctl("--socket", str(server), "open")
    assert (status, out) == (0, "opened: yes\n")
    app.open_result = OpenResult(False, "relay blocked by tamper")
    status, out, _ = await run_ctl("--socket", str(server), "open")
    assert status == Exit.FAILED
    assert out.splitlines() == ["opened: no", "reason: relay blocked by tamper"]
    status, out, _ = await run_ctl("--socket", str(server), "open", "gate", "--json")
    assert status == Exit.FAILED and json.loads(out) == {"opened": False, "reason": "relay blocked by tamper"}
    assert app.calls[-1][1][0] == "gate"


async def test_reload_refused_exits_1_and_says_why(server: Path, app: Any) -> None:
    app.reload_result = ReloadResult(False, error="intercom.toml: relay: pulse_seconds: must be 0.1..60, got inf")
    status, out, _ = await run_ctl("--socket", str(server), "reload")
    assert status == Exit.FAILED
    assert out.splitlines() == [
        "reload refused: intercom.toml: relay: pulse_seconds: must be 0.1..60, got inf",
        "the configuration in force is unchanged",
    ]
    status, out, _ = await run_ctl("--socket", str(server), "reload", "--json")
    assert status == Exit.FAILED and json.loads(out)["reloaded"] is False


def test_reload_output_names_what_applies_now_and_what_needs_a_restart() -> None:
    out = io.StringIO()
    print_reload(
        ReloadResult(True, applied=("relay.pulse_seconds", "prompts.text"), restart_needed=("sip.port",)).as_dict(), out
    )
    assert out.getvalue().splitlines() == [
        "reloaded",
        "applied now:        relay.pulse_seconds, prompts.text",
        "needs a restart:    sip.port",
        "(systemctl restart intercom applies them; a visit in progress is then cut short)",
    ]
    out = io.StringIO()
    print_reload(ReloadResult(True, unchanged=True).as_dict(), out)
    assert out.getvalue() == "reloaded: the configuration file has not changed\n"


# --- history ---------------------------------------------------------------------------------------------

ROWS = [
    HISTORY_ROW,
    {
        **HISTORY_ROW,
        "visit": "01JDVA",
        "apartment": "Cobertura 1202",
        "started_at": "2026-11-26T02:59:01+00:00",  # the evening before, in Brasília
        "outcome": "out_of_service_local_failure",
        "answered_by": "",
        "door_opened": False,
        "duration_seconds": 3725.0,
    },
]


def test_history_default_is_a_compact_table_in_local_time_within_80_columns() -> None:
    out = io.StringIO()
    print_history(ROWS, out, tz=BRASILIA)
    lines = out.getvalue().splitlines()
    assert lines == [
        "TIME              APARTMENT  OUTCOME         ANSWERED BY        DOOR  DURATION",
        "2026-11-26 10:05  101        door_opened     101@192.168.10.21  yes   22s",
        "2026-11-25 23:59  Cobertur…  out_of_servic…  -                  no    1h02m",
    ]
    assert max(len(line) for line in lines) <= 80


def test_history_reads_times_as_the_app_sends_them() -> None:
    """The app's rows are dataclasses.asdict(VisitRecord): datetimes reach the wire as str(), not isoformat()."""
    out = io.StringIO()
    print_history([{**HISTORY_ROW, "started_at": "2026-11-26 13:05:09.120000+00:00"}], out, tz=BRASILIA)
    assert out.getvalue().splitlines()[1].startswith("2026-11-26 10:05  101")


def test_history_wide_has_every_field_in_local_time() -> None:
    out = io.StringIO()
    print_history(ROWS[:1], out, wide=True, tz=BRASILIA)
    header, row = out.getvalue().splitlines()
    assert header.split()[:5] == ["VISIT", "APARTMENT", "BUTTON", "STARTED_AT", "OUTCOME"]
    assert "2026-11-26 10:05:09" in row and "2026-11-26 10:05:31" in row and "dtmf" in row


async def test_history_through_the_server(server: Path, app: Any) -> None:
    status, out, _ = await run_ctl("--socket", str(server), "history", "--limit", "2")
    assert status == 0 and app.calls == [("history", 2)]
    assert out.splitlines()[0].split()[:3] == ["TIME", "APARTMENT", "OUTCOME"]
    app.history_rows = []
    assert (await run_ctl("--socket", str(server), "history"))[1] == "(none)\n"


async def test_history_is_in_the_machines_local_zone(server: Path) -> None:
    """TZ decides, as for date(1): the same row shown in two zones."""
    shown = {}
    for zone in ("UTC0", "BRT3"):
        status, out, _ = await run_process("--socket", str(server), "history", env={"TZ": zone})
        assert status == 0
        shown[zone] = out.splitlines()[1][:16]
    assert shown == {"UTC0": "2026-11-26 13:05", "BRT3": "2026-11-26 10:05"}


# --- selftest and events ---------------------------------------------------------------------------------


async def test_selftest_table_and_exit_status(server: Path) -> None:
    status, out, _ = await run_ctl("--socket", str(server), "selftest")
    assert status == 1  # the fake's registration check fails
    assert out.splitlines() == [
        "RESULT  CHECK             DETAIL",
        "PASS    relay at rest     off",
        "FAIL    sip registration  408 timeout",
    ]
    status, out, _ = await run_ctl("--socket", str(server), "selftest", "--json")
    assert status == 1
    assert [c["passed"] for c in json.loads(out)] == [True, False]


def test_selftest_all_passed_is_true() -> None:
    assert print_selftest([{"check": "relay", "passed": True, "detail": ""}], io.StringIO()) is True


def test_events_print_local_time_and_name_first() -> None:
    out = io.StringIO()
    event = {"event": "RINGING", "target": "sip:101@pbx", "text": "", "timestamp": "2026-11-26T13:00:00+00:00"}
    print_event({**event, "elapsed_seconds": 1.5, "visit": "v1"}, out, tz=BRASILIA)
    assert out.getvalue() == "2026-11-26 10:00:00 RINGING target=sip:101@pbx text= elapsed_seconds=1.5 visit=v1\n"


async def test_events_follow_prints_each_event_until_the_daemon_stops(server: Path, app: Any) -> None:
    out = io.StringIO()
    got_two = threading.Event()

    class Tee(io.StringIO):
        def flush(self) -> None:
            out.write(self.getvalue())
            self.seek(0)
            self.truncate()
            if out.getvalue().count("\n") >= 2:
                got_two.set()

    err = io.StringIO()
    result: list[int] = []

    def follow() -> None:
        result.append(ctl.main(["--socket", str(server), "events", "--follow", "--json"], out=Tee(), err=err))

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: anyio.to_thread.run_sync(follow, abandon_on_cancel=True))
        with anyio.fail_after(5):
            await app.subscribed.wait()
        await app.event_send.send({"event": "BUTTON_PRESSED", "target": "101"})
        await app.event_send.send({"event": "DOOR_OPEN", "target": "control"})
        with anyio.fail_after(5):
            await anyio.to_thread.run_sync(got_two.wait)
        app.event_send.close()  # the app stops: the server says so
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["BUTTON_PRESSED", "DOOR_OPEN"]
    assert result == [Exit.CONNECTION_LOST]
    assert err.getvalue() == "intercomctl: the daemon ended the event stream\n"


# --- when things go wrong: one line, a status of its own -------------------------------------------------


@contextmanager
def scripted_daemon(path: Path, behaviour: Callable[[socket.socket], None]) -> Iterator[None]:
    """A listener at ``path`` that runs ``behaviour`` on the first connection, in a thread."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            behaviour(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        listener.close()
        thread.join(5)


def _read_request(conn: socket.socket) -> None:
    conn.settimeout(5)
    data = b""
    while b"\n" not in data:
        data += conn.recv(4096)


def _busy_at_once(conn: socket.socket) -> None:
    # What the server does when full: answer before reading anything, and close. The client's request then
    # meets a closed socket (EPIPE): before, it printed "Broken pipe" and exited 69 as if no daemon ran.
    conn.sendall(b'{"ok": false, "error": {"code": "busy", "message": "too many clients (max 16)"}}\n')
    conn.shutdown(socket.SHUT_RDWR)


def _half_a_reply(conn: socket.socket) -> None:
    _read_request(conn)
    conn.sendall(b'{"ok": true, "result": {"sta')


def _no_reply(conn: socket.socket) -> None:
    _read_request(conn)


def _garbage(conn: socket.socket) -> None:
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")


def _silence(conn: socket.socket) -> None:
    _read_request(conn)
    conn.recv(1)  # until the client gives up and closes


def _big_request_first(conn: socket.socket) -> None:
    # Busy while the client is still sending a large request: its send fails midway.
    conn.sendall(b'{"ok": false, "error": {"code": "busy", "message": "too many clients (max 16)"}}\n')
    conn.shutdown(socket.SHUT_RDWR)


@pytest.mark.parametrize(
    ("behaviour", "argv", "status", "message"),
    [
        (_busy_at_once, ["status"], Exit.BUSY, "intercomctl: daemon busy: too many clients (max 16)\n"),
        (_half_a_reply, ["status"], Exit.CONNECTION_LOST, "closed the connection in the middle of an answer\n"),
        (_no_reply, ["open"], Exit.CONNECTION_LOST, "intercomd closed the connection without answering\n"),
        (_garbage, ["status"], Exit.PROTOCOL, "not a control-protocol answer: b'HTTP/1.1 400 Bad Request\\r'\n"),
        (_silence, ["--timeout", "0.3", "status"], Exit.TIMEOUT, "intercomctl: intercomd did not answer in time\n"),
        (_big_request_first, ["dial", "sip:" + "1" * 3_000_000], Exit.BUSY, "daemon busy: too many clients (max 16)\n"),
    ],
    ids=["busy", "half-reply", "no-reply", "garbage", "timeout", "busy-mid-send"],
)
def test_a_misbehaving_daemon_gives_one_line_and_its_own_status(
    short_dir: Path, behaviour: Callable[[socket.socket], None], argv: list[str], status: Exit, message: str
) -> None:
    path = short_dir / "control.sock"
    out, err = io.StringIO(), io.StringIO()
    with scripted_daemon(path, behaviour):
        assert ctl.main(["--socket", str(path), *argv], out=out, err=err) == status
    assert out.getvalue() == ""
    assert err.getvalue().endswith(message) and err.getvalue().count("\n") == 1, err.getvalue()


@pytest.mark.parametrize("limits", [ControlLimits(max_clients=4, request_timeout=60.0, idle_grace=60.0)])
async def test_busy_from_the_real_server(server: Path, open_client: Any) -> None:
    async with open_client(server), open_client(server), open_client(server), open_client(server):
        status, out, err = await run_ctl("--socket", str(server), "status")
    assert (status, out) == (Exit.BUSY, "")
    assert err == "intercomctl: daemon busy: too many clients (max 4)\n"


def test_a_full_backlog_is_busy(short_dir: Path) -> None:
    """A daemon whose loop does not accept (wedged, or a connect flood): the kernel refuses with EAGAIN."""
    path = short_dir / "control.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(0)
        pending = []
        try:
            while True:  # fill the backlog (Linux queues backlog + 1)
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.setblocking(False)
                pending.append(s)
                s.connect(str(path))
        except BlockingIOError:
            pass
        err = io.StringIO()
        assert ctl.main(["--socket", str(path), "status"], out=io.StringIO(), err=err) == Exit.BUSY
        assert err.getvalue() == f"intercomctl: daemon busy: {path} accepts no more connections\n"
        for s in pending:
            s.close()


async def test_daemon_not_running_exits_69(short_dir: Path) -> None:
    status, _, err = await run_ctl("--socket", str(short_dir / "control.sock"), "status")
    assert status == Exit.NOT_RUNNING
    assert int(Exit.NOT_RUNNING) == 69  # what scripts already test for
    assert err == f"intercomctl: intercomd is not running (no control socket at {short_dir}/control.sock: {NOENT})\n"


async def test_stale_socket_exits_69(short_dir: Path) -> None:
    path = short_dir / "control.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
    status, _, err = await run_ctl("--socket", str(path), "status")
    assert status == 69
    assert "Connection refused" in err


async def test_a_path_that_is_not_a_socket_says_so(short_dir: Path) -> None:
    (short_dir / "control.sock").write_text("")
    status, _, err = await run_ctl("--socket", str(short_dir / "control.sock"), "status")
    assert status == Exit.NOT_RUNNING
    assert (
        err
        == f"intercomctl: {short_dir}/control.sock is not a socket: is --socket (or $INTERCOM_CONTROL_SOCKET) right?\n"
    )


async def test_permission_denied_exits_77(server: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores file modes; the subprocess test below covers EACCES as nobody")
    os.chmod(server, 0)
    status, _, err = await run_ctl("--socket", str(server), "status")
    assert status == 77
    assert "permission denied" in err


@pytest.mark.parametrize("bad", ["nan", "inf", "-1", "0", "soon"])
def test_a_bad_timeout_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        ctl.main(["--timeout", bad, "status"])
    assert exited.value.code == Exit.USAGE
    assert "--timeout" in capsys.readouterr().err


def test_help_documents_every_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        ctl.main(["--help"])
    text = capsys.readouterr().out
    for status in Exit:
        assert f"\n  {int(status):<4} " in text, status


# --- as a subprocess -------------------------------------------------------------------------------------

_AS_USER = """
import os, sys
from daemon.control import client  # imported as root: nobody cannot read root's Python installation
client._parser().parse_args(sys.argv[1:])  # warms argparse's lazy imports (locale, gettext) while still root
os.setgroups([]); os.setgid({gid}); os.setuid({uid})
raise SystemExit(client.main(sys.argv[1:]))
"""


async def run_process(*argv: str, user: str | None = None, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    if user is None:
        cmd = [sys.executable, "-m", "daemon.control.client", *argv]
    else:
        pw = pwd.getpwnam(user)
        cmd = [sys.executable, "-c", _AS_USER.format(uid=pw.pw_uid, gid=pw.pw_gid), *argv]
    environ = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    with anyio.fail_after(30):
        result = await anyio.run_process(cmd, check=False, cwd=REPO, env=environ)
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
    assert "not running" in err and "Traceback" not in err


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


async def test_directory_export_prints_the_csv_as_it_is(server: Path, app: Any) -> None:
    status, out, _ = await run_ctl("--socket", str(server), "directory", "export")
    assert status == Exit.OK and out == "number,name,residents,codes,strategy,fallback\n101,101,sip:101@h,,parallel,\n"
    status, out, _ = await run_ctl("--socket", str(server), "directory", "export", "--json")
    assert json.loads(out)["apartments"] == 1 and app.calls[-1] == ("directory", None)
