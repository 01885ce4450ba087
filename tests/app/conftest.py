"""The real ``intercomd`` as a subprocess: a config on MockFactory pins, ALSA captured to a file, a
datagram socket standing in for systemd's NOTIFY_SOCKET, and ``intercomctl`` run as a command.

Everything the tests learn comes from outside the process, as an operator or systemd would see it: the
notify datagrams, the control socket, stderr (the journal), events.jsonl and the SQLite history.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.simulation.alsa import write_capture_config
from tests.support.peers import free_port

VENV_BIN = Path(sys.executable).parent
INTERCOMD = str(VENV_BIN / "intercomd")
INTERCOMCTL = str(VENV_BIN / "intercomctl")
DOOR_CODE = "839201756"  # long and distinctive: a grep for it in the daemon's output must not hit by chance


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def render_config(
    *,
    port: int,
    rtp_port: int,
    state: Path,
    cache: Path,
    run: Path,
    residents: list[str],
    ring_timeout: float = 4,
    pulse_seconds: float = 1.0,
    registrar: str = "",
    account_uri: str = "sip:portao@127.0.0.1",
    username: str = "",
    waiting_text: str = "",
) -> str:
    account = f'uri = "{account_uri}"\nregistrar = "{registrar}"\n'
    if username:
        account += f'username = "{username}"\n'
    prompts = f'\n[prompts.text]\nwaiting = "{waiting_text}"\n' if waiting_text else ""
    return f"""\
panel_name = "app test panel"

[gpio]
pin_factory = "mock"

[[buttons]]
name = "101"
pin = 17

[relay]
pin = 27
pulse_seconds = {pulse_seconds}

[sip]
transport = "udp"
bind_address = "127.0.0.1"
port = {port}
rtp_port = {rtp_port}

[sip.account]
{account}
[timing]
ring_timeout_seconds = {ring_timeout}
hangup_after_open_seconds = 0.5

[prompts]
language = "en"
engine = "espeak-ng"
{prompts}
[[apartments]]
name = "101"
buttons = ["101"]
residents = {_toml_list(residents)}
codes = ["{DOOR_CODE}"]

[paths]
state_dir = "{state}"
cache_dir = "{cache}"
runtime_dir = "{run}"
"""


class NotifyListener:
    """systemd's side of sd_notify(3): a bound datagram socket; every message kept with its arrival time."""

    def __init__(self, path: Path, on_ready: Callable[[], object] | None = None) -> None:
        self.path = path
        self.on_ready = on_ready  # runs on the reader thread the moment READY=1 arrives: a snapshot of "then"
        self.ready_snapshot: object = None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._read, name="notify-listener", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            at, text = time.monotonic(), data.decode()
            if self.on_ready is not None and "READY=1" in text.splitlines() and self.ready_snapshot is None:
                self.ready_snapshot = self.on_ready()
            self.messages.append((at, text))

    def first(self, prefix: str, timeout: float) -> float:
        """Monotonic arrival time of the first message with a line starting with ``prefix``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, text in list(self.messages):
                if any(line.startswith(prefix) for line in text.splitlines()):
                    return at
            time.sleep(0.01)
        raise TimeoutError(f"no {prefix!r} notification within {timeout} s; got {self.messages}")

    def count(self, line: str) -> int:
        return sum(line in text.splitlines() for _, text in self.messages)

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        self.sock.close()


class Daemon:
    """One ``intercomd run`` process and everything around it."""

    def __init__(self, workdir: Path, rundir: Path, cache: Path) -> None:
        self.workdir = workdir
        self.rundir = rundir  # short: the control socket path must fit in sun_path (108 bytes)
        self.cache = cache
        self.state = workdir / "state"
        self.config_path = workdir / "intercom.toml"
        self.socket = rundir / "control.sock"
        self.port = free_port()
        # RTP below the ephemeral range, spread per daemon so parallel runs do not collide.
        self.rtp_port = 22000 + (free_port() % 40) * 200
        self.stderr_path = workdir / "intercomd.stderr"
        self.alsa = write_capture_config(workdir / "alsa")
        self.notify: NotifyListener | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.env: dict[str, str] = {}

    def write_config(self, residents: list[str], **kw: Any) -> None:
        self.config_path.write_text(
            render_config(
                port=self.port,
                rtp_port=self.rtp_port,
                state=self.state,
                cache=self.cache,
                run=self.rundir,
                residents=residents,
                **kw,
            )
        )

    def start(
        self,
        *,
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
        on_ready: Callable[[], object] | None = None,
    ) -> Daemon:
        self.notify = NotifyListener(self.rundir / "notify", on_ready)
        # Whatever systemd or the developer's shell put in our own environment must not leak into the daemon's.
        inherited = {
            k: v
            for k, v in os.environ.items()
            if k
            not in {
                "JOURNAL_STREAM",
                "WATCHDOG_PID",
                "WATCHDOG_USEC",
                "INTERCOM_CONFIG",
                "INTERCOM_SIP_PASSWORD",
                "NOTIFY_SOCKET",
            }
        }
        self.env = {
            **inherited,
            "ALSA_CONFIG_PATH": str(self.alsa.config_path),
            "NOTIFY_SOCKET": str(self.notify.path),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        with open(self.stderr_path, "ab") as err:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                [INTERCOMD, "--config", str(self.config_path), "run"],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                env=self.env,
                start_new_session=True,
            )
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30) -> float:
        """Seconds from spawn to READY=1; fails early (with the log) if the daemon exits first."""
        assert self.notify is not None and self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"intercomd exited {self.proc.returncode}:\n{self.log()[-3000:]}")
            with contextlib.suppress(TimeoutError):
                return self.notify.first("READY=1", 0.05) - self.started_at
        raise AssertionError(f"no READY=1 within {timeout} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def wait_log(self, text: str, timeout: float = 10, *, after: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log()[after:]:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged within {timeout} s:\n{self.log()[-3000:]}")
            time.sleep(0.02)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def ctl(self, *args: str, check: bool = True, timeout: float = 40) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [INTERCOMCTL, "--socket", str(self.socket), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"intercomctl {' '.join(args)} -> {result.returncode}: {result.stderr}")
        return result

    def ctl_json(self, *args: str) -> Any:
        return json.loads(self.ctl(*args, "--json").stdout)

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.ctl_json("status")
        return result

    def until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def completed(self) -> int:
        return int(self.status()["visits"]["completed"])

    def events(self) -> list[dict[str, Any]]:
        path = self.state / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def history_rows(self) -> list[dict[str, Any]]:
        """The SQLite file read directly: for after the daemon has exited."""
        with contextlib.closing(sqlite3.connect(self.state / "history.sqlite3")) as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM visits ORDER BY started_at")]

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        if self.notify is not None:
            self.notify.close()
            self.notify = None


@pytest.fixture(scope="session")
def prompt_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Shared: only the first daemon of the session synthesizes; the rest start from a warm cache, as a
    # panel does after its first boot. The READY test uses a cold cache of its own.
    return tmp_path_factory.mktemp("prompt-cache")


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # pytest's tmp_path can exceed the 108-byte sun_path limit once "control.sock" is appended.
    path = Path(tempfile.mkdtemp(prefix="ic-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_daemon(tmp_path: Path, short_dir: Path, prompt_cache: Path) -> Iterator[Callable[..., Daemon]]:
    daemons: list[Daemon] = []

    def make(cache: Path | None = None) -> Daemon:
        n = len(daemons)
        rundir = short_dir / str(n)
        rundir.mkdir()
        workdir = tmp_path / f"daemon{n}"
        workdir.mkdir()
        daemon = Daemon(workdir, rundir, cache or prompt_cache)
        daemons.append(daemon)
        return daemon

    try:
        yield make
    finally:
        for daemon in daemons:
            daemon.kill()
