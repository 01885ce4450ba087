"""A real ``intercomd run`` in a subprocess (mock pins, direct-IP SIP on 127.0.0.1) and ``intercomctl`` against
it, for the re-probe cases that must see what an operator sees: exit statuses, stderr (the journal), files."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

from daemon.config import default_config_text
from daemon.simulation.phone import free_port
from tests.support.child_env import child_env

__all__ = ["Intercomd", "daemon_config", "intercomctl", "intercomd"]

_ROOT = Path(__file__).resolve().parents[2]
_ENV = child_env()


def daemon_config(tmp_path: Path, cache: Path, *, edits: dict[str, str] | None = None, extra: str = "") -> Path:
    """The embedded default config on free ports with its files under ``tmp_path``; ``edits`` replace text
    (each must occur), ``extra`` is appended."""
    text = default_config_text()
    port = free_port()
    base = {
        "port = 5070": f'port = {port}\nbind_address = "127.0.0.1"',
        "rtp_port = 20000": f"rtp_port = {22000 + (port % 40) * 200}",
        '"/var/lib/intercom"': f'"{tmp_path / "state"}"',
        '"/var/cache/intercom"': f'"{cache}"',
        '"/run/intercom"': f'"{tmp_path / "run"}"',
    }
    for old, new in {**base, **(edits or {})}.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "intercom.toml"
    path.write_text(text + extra, encoding="utf-8")
    return path


def _python(module_main: str, *args: str) -> list[str]:
    return [sys.executable, "-c", f"import sys; from {module_main} import main; sys.exit(main())", *args]


def intercomd(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _python("daemon.cli", *args),
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**_ENV, **(env or {})},
    )


def intercomctl(socket_path: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    argv = _python("daemon.control.client", "--socket", str(socket_path), *args)
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout, env=_ENV)


class Intercomd:
    """``intercomd --config CONFIG run`` until :meth:`stop`; its stderr (the journal) in :attr:`log_path`."""

    def __init__(self, config: Path, *, level: str = "INFO") -> None:
        self.config = config
        self.level = level
        self.log_path = config.parent / "intercomd.log"
        self.socket = config.parent / "run" / "control.sock"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Self:
        with self.log_path.open("wb") as log:
            argv = _python("daemon.cli", "--config", str(self.config), "--log-level", self.level, "run")
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=_ENV)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"intercomd exited {self.process.returncode}:\n{self.journal()[-3000:]}")
            if self.socket.exists() and intercomctl(self.socket, "status").returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"intercomd not ready in {timeout} s:\n{self.journal()[-3000:]}")

    def journal(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def ctl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return intercomctl(self.socket, *args, timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        process, self.process = self.process, None
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(sig)
        try:
            return process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
