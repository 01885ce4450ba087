"""A real Mosquitto (Debian ``mosquitto``) on 127.0.0.1 for tests and the benchmark, with its own config.

Optional: a password file (made with ``mosquitto_passwd``), TLS with throwaway certificates (made with
``openssl``: a CA and a server certificate for 127.0.0.1/localhost), persistence (so a subscriber's
session and its queued QoS 1 messages survive a broker restart). :meth:`Mosquitto.stop` and
:meth:`Mosquitto.start` restart it on the same port; :meth:`pause`/:meth:`resume` freeze it (SIGSTOP) to
play a broker that accepts nothing and answers nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from daemon.simulation.phone import free_port

__all__ = ["Mosquitto", "TlsFiles", "make_tls_files"]

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_tls_files(directory: Path, *, name: str = "test") -> TlsFiles:
    """A throwaway CA and a server certificate it signed, valid for 127.0.0.1 and localhost."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / f"{name}-ca.key", directory / f"{name}-ca.crt"
    key, csr, cert = (
        directory / f"{name}-server.key",
        directory / f"{name}-server.csr",
        directory / f"{name}-server.crt",
    )
    ext = directory / f"{name}-san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n", encoding="ascii")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name} test CA",
            "-keyout", str(ca_key), "-out", str(ca_cert))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
            "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return TlsFiles(ca_cert, cert, key)


class Mosquitto:
    def __init__(
        self,
        workdir: Path,
        *,
        users: dict[str, str] | None = None,
        tls: TlsFiles | None = None,
        persistence: bool = False,
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.users = users or {}
        self.tls = tls
        self.persistence = persistence
        self.log_path = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(self._config(), encoding="utf-8")

    def _config(self) -> str:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "user root" if os.geteuid() == 0 else "",  # as root it would switch to 'mosquitto' and lose our files
            f"log_dest file {self.log_path}",
            "log_type all",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "max_queued_messages 100000",
        ]
        if self.users:
            passwords = self.workdir / "passwords"
            passwords.write_text("", encoding="utf-8")
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True, timeout=30)
            passwords.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca_cert}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
            ]
        return "\n".join(line for line in lines if line) + "\n"

    def start(self, timeout: float = 10.0) -> Self:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while not self._listening():
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {err}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout} s")
            time.sleep(0.01)  # a subprocess's readiness: nothing to wait on but the port
        return self

    def _listening(self) -> bool:
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        self.resume(proc)
        proc.terminate()  # SIGTERM: mosquitto saves its persistence file on the way out
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self, proc: subprocess.Popen[bytes] | None = None) -> None:
        proc = proc or self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
