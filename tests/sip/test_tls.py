"""SIP over TLS against a real kamailio with a throwaway CA made at test time (no key is ever committed):
registration with the server certificate verified, and refusal of a server whose certificate another CA
signed."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import anyio
import pytest

from daemon.bridge import LoopBridge
from daemon.config import SipConfig
from daemon.errors import SipError
from daemon.sip import CallEnded, DtmfReceived, MediaActive, RegistrationChanged, RegistrationFailure, SipEngine
from tests.sip.conftest import EventLog, make_config
from tests.sip.test_tcp_connections import closed_by_peer
from tests.support.peers import Baresip, Kamailio

pytestmark = pytest.mark.peers


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA certificate: what a client trusts
    cert: Path  # the server's certificate (SAN IP:127.0.0.1), signed by ``ca``
    key: Path  # the server's private key


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=10)


def make_pki(directory: Path, name: str, san: str = "IP:127.0.0.1") -> Pki:
    """A CA and a server certificate for ``san`` it signed, valid for a day (EC P-256: fast)."""
    d = directory / name
    d.mkdir()
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        d / "ca.key",
        "-out",
        d / "ca.pem",
        "-days",
        "1",
        "-subj",
        f"/CN=throwaway test CA {name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    _openssl(
        "req",
        *ec,
        "-keyout",
        d / "server.key",
        "-out",
        d / "server.csr",
        "-subj",
        f"/CN={san.split(',', maxsplit=1)[0].split(':', 1)[1]}",
    )
    (d / "ext.cnf").write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        d / "server.csr",
        "-CA",
        d / "ca.pem",
        "-CAkey",
        d / "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        d / "ext.cnf",
        "-out",
        d / "server.pem",
    )
    return Pki(d / "ca.pem", d / "server.pem", d / "server.key")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path, "good")


def _tls_config(k: Kamailio, ca: Path, user: str = "panel", password: str = "s3cret", **changes: object) -> SipConfig:
    account = {"uri": f"sip:{user}@127.0.0.1", "registrar": k.tls_registrar, "username": user, "password": password}
    return make_config(transport="tls", tls_ca_file=str(ca), tls_verify_server=True, account=account, **changes)


async def test_registers_over_tls_with_verified_server(tmp_path: Path, bridge: LoopBridge, pki: Pki) -> None:
    with Kamailio(tmp_path, users={"panel": "s3cret"}, tls=(pki.cert, pki.key)) as k:
        async with SipEngine(_tls_config(k, pki.ca), bridge) as engine:
            event = await EventLog(engine).wait(RegistrationChanged)
            assert (event.active, event.code) == (True, 200), event
            assert engine.registration.active
        # The binding really came over TLS (kamailio saw the REGISTER on its TLS socket).
        assert "tls" in k.log_text().lower()


async def test_server_signed_by_another_ca_is_refused(tmp_path: Path, bridge: LoopBridge, pki: Pki) -> None:
    other = make_pki(tmp_path, "other")
    with Kamailio(tmp_path, users={"panel": "s3cret"}, tls=(pki.cert, pki.key)) as k:
        async with SipEngine(_tls_config(k, other.ca), bridge) as engine:
            event = await EventLog(engine).wait(RegistrationChanged)
            # A transport failure, not a SIP status: "transport error: SSL certificate verification error
            # (PJSIP_TLS_ECERTVERIF)" (pjsip reports it as a made-up 503).
            assert not event.active and event.failure is RegistrationFailure.TRANSPORT, event
            assert "certificate" in event.reason.lower() or "TLS" in event.reason, event
            assert not engine.registration.active
            assert engine.fault_counters == (0, 0)
        assert "REGISTER challenge" not in k.log_text()  # no SIP got through


async def test_certificate_for_another_address_is_refused(tmp_path: Path, bridge: LoopBridge) -> None:
    """The right CA, but the server's certificate names 127.0.0.2: the name check fails."""
    wrong = make_pki(tmp_path, "wrong-name", san="IP:127.0.0.2,DNS:elsewhere.invalid")
    with Kamailio(tmp_path, users={"panel": "s3cret"}, tls=(wrong.cert, wrong.key)) as k:
        async with SipEngine(_tls_config(k, wrong.ca), bridge) as engine:
            event = await EventLog(engine).wait(RegistrationChanged)
            assert not event.active and event.failure is RegistrationFailure.TRANSPORT, event
            assert not engine.registration.active


class TlsBaresip(Baresip):
    """A :class:`Baresip` registered with kamailio over TLS (trusting ``pki.ca``, listening for TLS with
    ``pki``'s certificate), and/or with ``mediaenc`` (e.g. "srtp-mand"). Adjusts the files
    :meth:`Baresip.start` wrote, just before it spawns baresip."""

    def __init__(
        self, workdir: Path, *, pki: Pki | None = None, kamailio: Kamailio | None = None, mediaenc: str = ""
    ) -> None:
        super().__init__(workdir)
        self.pki, self.kamailio, self.mediaenc = pki, kamailio, mediaenc

    def start(self) -> Self:
        super().start()
        if self.kamailio is not None:  # registered over TLS by the account line _spawn writes
            try:
                self._wait_registered(10)
            except TimeoutError:
                self.stop()
                raise
        return self

    def _spawn(self, argv: list[str]) -> None:
        cfg = self.workdir / "cfg"
        extra = ""
        if self.mediaenc:
            extra += "module\tsrtp.so\n"
        if self.pki is not None:
            bundle = self.workdir / "cert-and-key.pem"
            bundle.write_text(self.pki.cert.read_text() + self.pki.key.read_text())
            extra += f"sip_certificate\t{bundle}\nsip_cafile\t{self.pki.ca}\n"
        (cfg / "config").write_text((cfg / "config").read_text() + extra)
        params = f";mediaenc={self.mediaenc}" if self.mediaenc else ""
        if self.kamailio is not None:
            password = self.kamailio.users[self.user]
            account = (
                f"<sip:{self.user}@127.0.0.1:{self.kamailio.tls_port};transport=tls>;auth_pass={password};"
                f"answermode={self.answermode};regint=600{params}\n"
            )
            (cfg / "accounts").write_text(account)
        else:
            (cfg / "accounts").write_text((cfg / "accounts").read_text().rstrip("\n") + params + "\n")
        super()._spawn(argv)


async def _call_with_dtmf(engine: SipEngine, phone: Baresip, uri: str) -> None:
    """Dial ``uri`` (answered by ``phone``), DTMF both ways, hang up."""
    log = EventLog(engine)
    call = await engine.dial(uri, ring_timeout=10)
    await log.wait(MediaActive, call)
    await phone.wait_event("CALL_ESTABLISHED", 5)
    await anyio.sleep(0.2)
    phone.command("sndcode", "7")
    got = await log.wait(DtmfReceived, call)
    assert (got.digit, got.method) == ("7", "rfc2833")
    await engine.send_dtmf(call, "5")
    assert (await phone.wait_event("CALL_DTMF_START", 5)).get("param") == "5"
    await engine.hangup(call)
    await log.wait(CallEnded, call)
    await phone.wait_event("CALL_CLOSED", 5)  # the BYE reached the phone


@pytest.mark.parametrize("srtp", ["disabled", "mandatory"])
async def test_call_over_tls_through_kamailio(tmp_path: Path, bridge: LoopBridge, pki: Pki, srtp: str) -> None:
    users = {"panel": "s3cret", "resident": "r3s"}
    mediaenc = "srtp-mand" if srtp == "mandatory" else ""
    with (
        Kamailio(tmp_path, users=users, tls=(pki.cert, pki.key)) as k,
        TlsBaresip(tmp_path, pki=pki, kamailio=k, mediaenc=mediaenc) as phone,
    ):
        async with SipEngine(_tls_config(k, pki.ca, srtp=srtp), bridge) as engine:
            assert (await EventLog(engine).wait(RegistrationChanged)).active
            await _call_with_dtmf(engine, phone, f"sip:resident@127.0.0.1:{k.tls_port};transport=tls")
    assert "{0/TLS/v4} 200 OK" in phone.log_text()  # the phone's leg was TLS too
    if srtp == "mandatory":
        assert "SRTP is Enabled" in phone.log_text()


async def test_srtp_mandatory_over_udp_is_refused_cleanly(tmp_path: Path, bridge: LoopBridge) -> None:
    """pjsua only sends SDES-SRTP keys over a secure transport (its srtpSecureSignaling default, 1): with
    transport "udp" and srtp "mandatory" a dial fails with PJSIP_ESESSIONINSECURE, and the engine goes on."""
    with TlsBaresip(tmp_path, mediaenc="srtp-mand") as phone:
        async with SipEngine(make_config(srtp="mandatory"), bridge) as engine:
            with pytest.raises(SipError, match="PJSIP_ESESSIONINSECURE"):
                await engine.dial(phone.uri, ring_timeout=10)
            assert await engine.options_ping(phone.uri) == 200  # still serving
            assert engine.fault_counters == (0, 0)


async def test_tls_connections_that_never_handshake_are_closed(bridge: LoopBridge, pki: Pki) -> None:
    """Connect to the TLS port and send nothing: pjsip had no handshake timeout, so each such connection
    kept one of pjlib's 64 sockets for ever (before the handshake it is not a transport the engine sees)."""
    from daemon.sip._pj_setup import TLS_HANDSHAKE_TIMEOUT_MS

    config = make_config(
        transport="tls", tls_ca_file=str(pki.ca), tls_cert_file=str(pki.cert), tls_key_file=str(pki.key)
    )
    async with SipEngine(config, bridge) as engine:
        socks = [socket.create_connection(("127.0.0.1", engine.sip_port), timeout=2) for _ in range(8)]
        try:
            with anyio.fail_after(TLS_HANDSHAKE_TIMEOUT_MS / 1000 + 3):
                while not all(closed_by_peer(s) for s in socks):
                    await anyio.sleep(0.1)
            await engine.ping()
            assert engine.fault_counters == (0, 0)
        finally:
            for s in socks:
                s.close()
