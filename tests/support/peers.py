"""Real SIP peers for tests, each a subprocess on 127.0.0.1 with its files in a temp dir.

* :class:`Kamailio` - registrar/proxy with digest auth against an in-memory htable of users (no database).
* :class:`Baresip` - a resident's phone: auto or manual answer, plays an 8 kHz WAV, records what it hears
  (sndfile module), driven and observed through ctrl_tcp (netstring JSON).
* :class:`Sipp` - scripted far ends (busy, decline, never answer, SIP INFO DTMF...) and inbound callers.

Every class is a context manager whose exit kills the process group; ports are picked free per instance.
Waits take a timeout and come in async form (``await peer.wait_event(...)``) because a test blocking the
event loop would also stall the SIP engine's owner thread, which posts into that loop.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Self

import anyio

from daemon.simulation.phone import Baresip, PeerProcess, free_port, write_tones_wav
from tests.support.sipp_scenarios import render

__all__ = ["Baresip", "Kamailio", "PeerProcess", "Sipp", "free_port", "write_tones_wav"]


def kamailio_modules() -> str:
    """Debian's kamailio module directory for this machine's architecture (x86_64-linux-gnu on a PC,
    aarch64-linux-gnu on a Pi or in the arm64 chroot, arm-linux-gnueabihf on armhf): found, not assumed."""
    found = sorted(Path("/usr/lib").glob("*/kamailio/modules"))
    return f"{found[0]}/" if found else "/usr/lib/kamailio/modules/"


KAMAILIO_MODULES = kamailio_modules()


def sip_options(port: int, timeout: float = 0.3, user: str = "") -> int | None:
    """Blocking OPTIONS to 127.0.0.1:port over UDP; the status code or None. For readiness checks. With ``user``
    the request is for ``user@`` there: through kamailio, it reaches that user's phone only once it is registered."""
    target = f"{user}@127.0.0.1:{port}" if user else f"127.0.0.1:{port}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        lport = s.getsockname()[1]
        branch = f"z9hG4bK{time.time_ns()}"
        msg = (
            f"OPTIONS sip:{target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lport};branch={branch}"
            f"\r\nFrom: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:{target}>\r\nCall-ID: {time.time_ns()}\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        s.sendto(msg.encode(), ("127.0.0.1", port))
        try:
            data = s.recv(4096)
        except OSError:
            return None
        parts = data.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


class Kamailio(PeerProcess):
    """Registrar + proxy on 127.0.0.1:``port`` (UDP and TCP), digest auth against ``users`` {name: password}.

    REGISTERs are challenged (realm = the From domain, 127.0.0.1); INVITEs are not. ``max_expires`` caps the
    registration lifetime the registrar grants, so clients refresh often (used to test re-registration
    after :meth:`restart`, which loses every binding as a database-less registrar does).
    ``tls``: (certificate, private key) PEM files; with it kamailio also listens for SIP over TLS on
    :attr:`tls_port` (no client certificate asked for).
    """

    name = "kamailio"

    def __init__(
        self, workdir: Path, users: dict[str, str], *, max_expires: int = 3600, tls: tuple[Path, Path] | None = None
    ) -> None:
        super().__init__(Path(workdir) / "kamailio")
        self.users = dict(users)
        self.max_expires = max_expires
        self.port = free_port()
        self.tls = tls
        self.tls_port = free_port() if tls else 0

    @property
    def tls_registrar(self) -> str:
        return f"sip:127.0.0.1:{self.tls_port};transport=tls"

    @property
    def registrar(self) -> str:
        return f"sip:127.0.0.1:{self.port}"

    def uri(self, user: str) -> str:
        return f"sip:{user}@127.0.0.1:{self.port}"

    def _tls_config(self) -> tuple[str, str]:
        """(core lines, module lines) of the TLS listener; empty without ``tls``. Writes tls.cfg."""
        if self.tls is None:
            return "", ""
        cert, key = self.tls
        side = "method = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n"
        tls_cfg = self.workdir / "tls.cfg"
        tls_cfg.write_text(
            f"[server:default]\n{side}certificate = {cert}\nprivate_key = {key}\n\n[client:default]\n{side}"
        )
        core = f"enable_tls=yes\nlisten=tls:127.0.0.1:{self.tls_port}\nalias=127.0.0.1:{self.tls_port}\n"
        return core, f'loadmodule "tls.so"\nmodparam("tls", "config", "{tls_cfg}")\n'

    def _config(self) -> str:
        users = "\n".join(f'    $sht(users=>{u}) = "{p}";' for u, p in self.users.items())
        tls_core, tls_modules = self._tls_config()
        return f"""#!KAMAILIO
debug=2
log_stderror=yes
children=2
tcp_children=2
dns=no
rev_dns=no
auto_aliases=no
listen=udp:127.0.0.1:{self.port}
listen=tcp:127.0.0.1:{self.port}
alias=127.0.0.1:{self.port}
{tls_core}mpath="{KAMAILIO_MODULES}"
{tls_modules}loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "htable.so"
loadmodule "auth.so"
modparam("htable", "htable", "users=>size=4;")
modparam("registrar", "max_expires", {self.max_expires})
modparam("registrar", "min_expires", 1)
modparam("usrloc", "db_mode", 0)

event_route[htable:mod-init] {{
{users}
}}

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    t_check_trans();
    if (is_method("REGISTER")) {{
        if (!pv_auth_check("$fd", "$sht(users=>$fU)", "0", "1")) {{
            xlog("L_INFO", "REGISTER challenge/deny for $fU\\n");
            auth_challenge("$fd", "0");
            exit;
        }}
        if (!save("location")) {{ sl_reply_error(); }}
        exit;
    }}
    if (is_method("OPTIONS") && uri == myself && $rU == $null) {{ sl_send_reply("200", "OK"); exit; }}
    if (is_method("INVITE")) {{ record_route(); }}
    if (uri == myself) {{
        if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
    }}
    if (!t_relay()) {{ sl_reply_error(); }}
}}
"""

    def start(self) -> Self:
        run = self.workdir / "run"
        run.mkdir(exist_ok=True)
        cfg = self.workdir / "kamailio.cfg"
        cfg.write_text(self._config())
        self._spawn(
            [
                "kamailio",
                "-f",
                str(cfg),
                "-DD",
                "-E",
                "-Y",
                str(run),
                "-P",
                str(run / "k.pid"),
                "-m",
                "32",
                "-M",
                "8",
                "-w",
                str(run),
            ]
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"kamailio exited:\n{self.log_text()[-3000:]}")
            if sip_options(self.port) == 200:
                return self
        self.stop()
        raise RuntimeError(f"kamailio did not answer OPTIONS:\n{self.log_text()[-3000:]}")

    def restart(self) -> None:
        """Stop and start again on the same port, losing all registrations."""
        self.stop()
        self.start()


def _udp_port_bound(port: int) -> bool:
    """Is a UDP socket bound to ``port`` on this machine (IPv4 or IPv6)? From /proc/net/udp{,6}."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        if any(int(line.split()[1].rsplit(":", 1)[1], 16) == port for line in lines if line.strip()):
            return True
    return False


class Sipp(PeerProcess):
    """A SIPp far end. UAS scenarios (names starting "uas_") listen on :attr:`port` until stopped, so the
    engine can dial :meth:`uri`; UAC scenarios ("uac_") are run once per :meth:`run_uac`. ``fields`` fill
    the scenario's placeholders (``digit``, ``status``, ``caller``, ``hold_ms``). See sipp_scenarios.py."""

    name = "sipp"

    def __init__(self, workdir: Path, scenario: str, **fields: object) -> None:
        super().__init__(Path(workdir) / f"sipp-{scenario}")
        self.scenario = scenario
        self.port = free_port()
        self.scenario_path = self.workdir / f"{scenario}.xml"
        self.scenario_path.write_text(render(scenario, **fields))
        self.messages_path = self.workdir / "messages.log"

    def uri(self, user: str = "far") -> str:
        return f"sip:{user}@127.0.0.1:{self.port}"

    def _argv(self, extra: list[str]) -> list[str]:
        return [
            "sipp",
            "-sf",
            str(self.scenario_path),
            "-i",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-nostdin",
            "-trace_msg",
            "-message_file",
            str(self.messages_path),
            "-trace_err",
            "-error_file",
            str(self.workdir / "errors.log"),
            "-mp",
            str(free_port()),
            *extra,
        ]

    def start(self, max_calls: int | None = None) -> Self:
        """Start a UAS; returns once its port is bound."""
        self._spawn(self._argv(["-m", str(max_calls)] if max_calls else []))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            # Read from the kernel's table, not by binding the port: a probe holding it for an instant
            # made sipp's own bind fail now and then ("sipp exited" with no error of its own).
            if _udp_port_bound(self.port):
                return self
            if not self.running():
                raise RuntimeError(f"sipp exited:\n{self.log_text()[-2000:]}")
            time.sleep(0.02)
        raise RuntimeError("sipp did not bind its port")

    async def run_uac(self, target_port: int, *, user: str = "panel", calls: int = 1, timeout: float = 20) -> int:
        """Place ``calls`` calls to ``sip:user@127.0.0.1:target_port``; return sipp's exit status
        (0: every call went exactly as scripted)."""
        self._spawn(
            self._argv(
                [
                    f"127.0.0.1:{target_port}",
                    "-s",
                    user,
                    "-m",
                    str(calls),
                    "-timeout",
                    f"{int(timeout)}s",
                    "-timeout_error",
                ]
            )
        )
        assert self.proc is not None
        proc = self.proc
        with anyio.fail_after(timeout + 5):
            while proc.poll() is None:
                await anyio.sleep(0.02)
        self.proc = None
        return int(proc.returncode)

    def messages(self) -> str:
        return self.messages_path.read_text(errors="replace") if self.messages_path.exists() else ""
