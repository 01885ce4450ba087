"""A simulated resident: baresip as the phone, and the process plumbing shared with the test peers.

Shipped with the daemon because ``intercomd demo`` runs a resident's phone on 127.0.0.1; the test suite
reuses it (tests/support/peers.py) along with kamailio and sipp.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import signal
import socket
import struct
import subprocess
import threading
import time
import wave
from pathlib import Path
from typing import Any, Protocol, Self

import anyio

__all__ = ["BARESIP_MODULES", "Baresip", "PeerProcess", "Registrar", "free_port", "write_tones_wav"]

BARESIP_MODULES = "/usr/lib/baresip/modules"


class Registrar(Protocol):
    """What a phone needs of a registrar (the tests' kamailio): its port, users and their URIs."""

    port: int
    users: dict[str, str]

    def uri(self, user: str) -> str: ...


def free_port(span: int = 1) -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now (SIP listens on both), with the ``span - 1`` ports
    above it free too (baresip listens for SIP over TLS on the port above its SIP port). Free *now*: another
    process may bind it before the caller does, so a caller that starts a server on it retries on EADDRINUSE."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = int(u.getsockname()[1])
        if port + span - 1 <= 65535 and all(_free_both(p) for p in range(port, port + span)):
            return port
    raise RuntimeError("no free port found")


def _free_both(port: int) -> bool:
    with contextlib.ExitStack() as stack:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            sock = stack.enter_context(socket.socket(socket.AF_INET, kind))
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


SIP_PORT_SPAN = 2  # baresip's SIP port (UDP and TCP) and the one above it (SIP over TLS)
START_ATTEMPTS = 3


def write_tones_wav(path: Path, tones: list[tuple[float, float]], rate: int = 8000, amplitude: int = 12000) -> Path:
    """Write a mono 16-bit WAV of ``(frequency_hz, seconds)`` segments (0 Hz: silence)."""
    frames = bytearray()
    for freq, seconds in tones:
        for i in range(int(rate * seconds)):
            frames += struct.pack("<h", int(amplitude * math.sin(2 * math.pi * freq * i / rate)) if freq else 0)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return path


class PeerProcess:
    """A subprocess in its own process group, its output in ``log_path``; killed (group-wide) on stop."""

    name = "peer"

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_env: dict[str, str] = {}  # set before start: added to the process's environment

    def _spawn(self, argv: list[str]) -> None:
        # A test's private ALSA config (tests/support/alsa.py) captures *our* speaker; a peer must keep the
        # machine's own, or baresip's "alsa,null" player is unknown and it drops the call.
        env = {**{k: v for k, v in os.environ.items() if k != "ALSA_CONFIG_PATH"}, **self.extra_env}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM the group, SIGKILL it after 3 s. Safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # leftover children

    def start(self) -> Self:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Baresip(PeerProcess):
    """A resident's phone. ``registrar``: a :class:`Kamailio` to register with (password from its users),
    or None for direct-IP calls to :attr:`uri`. ``answermode``: "auto" or "manual" (then :meth:`accept`).
    It plays ``audio_source`` (8 kHz mono 16-bit WAV; baresip hangs up when it ends, so make it longer than
    the call: the default is 120 s of silence) and records what it hears into ``workdir/rec``
    (``dump-*-dec.wav``: see :meth:`received_recordings`). ``audio_player``: baresip's ``module,device``; ALSA's
    ``null`` has no clock, so baresip's player thread then spins (~70 % of a core during a call): a benchmark
    that needs the machine quiet gives it a paced device (benchmarks/talk_call.py: a sink of the paced card)."""

    name = "baresip"

    def __init__(
        self,
        workdir: Path,
        *,
        user: str = "resident",
        registrar: Registrar | None = None,
        answermode: str = "auto",
        audio_source: Path | None = None,
        listen_host: str = "127.0.0.1",
        audio_player: str = "alsa,null",
    ) -> None:
        super().__init__(Path(workdir) / f"baresip-{user}-{listen_host}")
        self.audio_player = audio_player
        self.user = user
        # Where its SIP socket is bound. Its From stays user@127.0.0.1 whatever this is: another loopback
        # address (127.0.0.2) makes a caller whose From claims to be somebody it is not.
        self.listen_host = listen_host
        self.registrar = registrar
        self.answermode = answermode
        self.audio_source = audio_source or write_tones_wav(self.workdir / "silence.wav", [(0, 120.0)])
        self.port = free_port(SIP_PORT_SPAN)
        self.ctrl_port = free_port()
        self.rec_dir = self.workdir / "rec"
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.all_events: list[dict[str, Any]] = []
        self._ctrl: socket.socket | None = None
        self._reader: threading.Thread | None = None

    @property
    def rtp_ports(self) -> range:
        """The ports its RTP may use (baresip's ``rtp_ports``; it picks one at random per call)."""
        base = 10000 + self.port % 20000
        return range(base, base + 100)

    @property
    def uri(self) -> str:
        if self.registrar is not None:
            return self.registrar.uri(self.user)
        return f"sip:{self.user}@{self.listen_host}:{self.port}"

    def start(self) -> Self:
        """Start baresip and wait for its control socket (and its registration, with a registrar). A port taken
        by another process between :func:`free_port` and baresip's bind is picked again, up to
        :data:`START_ATTEMPTS` times: read :attr:`uri` and :attr:`port` after ``start()``."""
        for _ in range(START_ATTEMPTS - 1):
            try:
                return self._start_once()
            except RuntimeError as exc:
                if "Address already in use" not in str(exc):
                    raise
            self.port, self.ctrl_port = free_port(SIP_PORT_SPAN), free_port()
        return self._start_once()

    def _start_once(self) -> Self:
        self.rec_dir.mkdir(exist_ok=True)
        cfg = self.workdir / "cfg"
        cfg.mkdir(exist_ok=True)
        (cfg / "config").write_text(
            f"poll_method\tepoll\nsip_listen\t{self.listen_host}:{self.port}\naudio_player\t{self.audio_player}\n"
            f"audio_source\taufile,{self.audio_source}\naudio_alert\talsa,null\n"
            f"rtp_ports\t{self.rtp_ports.start}-{self.rtp_ports.stop - 1}\n"
            f"module_path\t{BARESIP_MODULES}\nmodule\tg711.so\nmodule\taufile.so\n"
            "module\talsa.so\nmodule\tsndfile.so\nmodule\tctrl_tcp.so\nmodule_app\taccount.so\nmodule_app\tmenu.so\n"
            f"ctrl_tcp_listen\t127.0.0.1:{self.ctrl_port}\nsnd_path\t{self.rec_dir}\n"
        )
        if self.registrar is not None:
            password = self.registrar.users[self.user]
            account = (
                f"<sip:{self.user}@127.0.0.1:{self.registrar.port}>;auth_pass={password};"
                f"answermode={self.answermode};regint=600\n"
            )
        else:
            account = f"<sip:{self.user}@127.0.0.1>;regint=0;answermode={self.answermode}\n"
        (cfg / "accounts").write_text(account)
        (cfg / "contacts").write_text("")
        logged = len(self.log_text())  # the log is appended to: this attempt's lines start here
        self._spawn(["baresip", "-f", str(cfg)])
        deadline = time.monotonic() + 10
        while self._ctrl is None:
            if not self.running() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"baresip did not start:\n{self.log_text()[logged:][-3000:]}")
            with contextlib.suppress(OSError):
                self._ctrl = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=0.2)
            time.sleep(0.05)
        self._ctrl.settimeout(None)
        # One reader per simulated phone, for its whole life (not per operation): the phone's control socket
        # is read with blocking calls, and tests wait on its events from sync and async code alike.
        self._reader = threading.Thread(target=self._read_events, name=f"baresip-{self.user}-ctrl", daemon=True)
        self._reader.start()
        if self.registrar is not None:
            try:
                self._wait_registered(10)
            except TimeoutError:
                self.stop()  # never leave a phone running behind a failed start
                raise
        return self

    def _wait_registered(self, timeout: float) -> None:
        """REGISTER_OK can come before ctrl_tcp's client connects, and is then never seen (over TLS on
        loopback, always): so also ask ``reginfo`` until it reports the registration OK."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(
                e.get("type") == "REGISTER_OK" or (e.get("response") and "OK" in str(e.get("data", "")))
                for e in list(self.all_events)
            ):
                return
            self.command("reginfo")
            time.sleep(0.1)
        raise TimeoutError(f"baresip did not register:\n{self.log_text()[-3000:]}")

    def _read_events(self) -> None:
        ctrl = self._ctrl
        assert ctrl is not None
        buf = b""
        with contextlib.suppress(OSError, ValueError):
            while chunk := ctrl.recv(65536):
                buf += chunk
                while b":" in buf:
                    length, rest = buf.split(b":", 1)
                    if len(rest) < int(length) + 1:
                        break
                    message = json.loads(rest[: int(length)])
                    buf = rest[int(length) + 1 :]
                    self.all_events.append(message)
                    self.events.put(message)

    def command(self, command: str, params: str = "") -> None:
        """Send a ctrl_tcp command, e.g. ``command("sndcode", "1#")`` (RFC 2833 digits) or ``"hangup"``."""
        assert self._ctrl is not None
        data = json.dumps({"command": command, "params": params, "token": str(time.time_ns())}).encode()
        self._ctrl.sendall(b"%d:%s," % (len(data), data))

    def accept(self) -> None:
        self.command("accept")

    def hangup(self) -> None:
        self.command("hangup")

    def _match(self, kind: str, timeout: float) -> dict[str, Any] | None:
        try:
            message = self.events.get(timeout=timeout)
        except queue.Empty:
            return None
        return message if message.get("event") and message.get("type") == kind else {}

    def wait_event_sync(self, kind: str, timeout: float) -> dict[str, Any]:
        """Block until an event of type ``kind`` (e.g. CALL_ESTABLISHED); earlier events are discarded."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if found := self._match(kind, min(left, 0.1)):
                return found
        raise TimeoutError(f"baresip: no {kind} within {timeout} s; saw {[e.get('type') for e in self.all_events]}")

    async def wait_event(self, kind: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109 - mirrors the sync one
        """Await an event of type ``kind`` without blocking the event loop; earlier events are discarded."""
        with anyio.fail_after(timeout):
            while True:
                try:
                    message = self.events.get_nowait()
                except queue.Empty:
                    await anyio.sleep(0.01)
                    continue
                if message.get("event") and message.get("type") == kind:
                    return message

    def received_recordings(self) -> list[Path]:
        """WAV files of audio received from the far end (sndfile's decoder-side dumps)."""
        return sorted(self.rec_dir.glob("dump-*-dec.wav"))

    def stop(self) -> None:
        if self._ctrl is not None:
            with contextlib.suppress(OSError):
                self._ctrl.close()
            self._ctrl = None
        super().stop()
