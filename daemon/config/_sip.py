"""The ``[sip]`` and ``[sip.account]`` sections: the panel's transport, ports, allowlist and account."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Annotated, Literal

from daemon.config._uris import dial_problems, uri_problems
from hw.settings import Range, range_problems

__all__ = ["MAX_CALLS_LIMIT", "SipAccountConfig", "SipConfig", "ipv4_problems"]

# Beyond this many call slots pjlib's 64-socket ioqueue leaves no room to refuse an INVITE flood safely
# (daemon/sip/_teardown_pace.py computes the budget; its tests check this limit still leaves one).
MAX_CALLS_LIMIT = 12
# Linux's ephemeral ports start at 32768: RTP above that collides with outgoing sockets now and then.
_RTP_CEILING = 32768
# Networks at least this wide (a /8 is 16 million addresses) hardly restrict where an allowed call comes from.
WIDE_PREFIX = 8


def ipv4_problems(key: str, text: str) -> list[str]:
    """``text`` must be an IPv4 address: the panel speaks IPv4 only."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return [f"{key}: {text!r} is not an IPv4 address (like 192.168.1.20); host names are not accepted here"]
    if address.version == 6:
        return [f"{key}: {text!r} is an IPv6 address; IPv6 is not supported (the panel speaks SIP over IPv4 only)"]
    return []


@dataclass(frozen=True)
class SipAccountConfig:
    # The panel's own address. With no registrar the panel places direct-IP calls only.
    uri: str = "sip:portao@127.0.0.1"
    registrar: str = ""
    username: str = ""
    password: str = ""
    password_file: str = ""  # a file holding only the password, preferred to password
    realm: str = "*"
    register_expiry: Annotated[int, Range(60, 86_400, "seconds")] = 300
    # Registrars in order of preference (a PBX and its standby). ``registrar`` alone is the one-registrar
    # form; given both, ``registrar`` must be the first of ``registrars``. After construction both agree:
    # ``registrar`` is the first (the code that only asks "is there a registrar?" keeps working).
    registrars: tuple[str, ...] = ()
    # A registrar that answers neither REGISTER nor an OPTIONS probe for this long is passed over for the next.
    failover_seconds: Annotated[float, Range(1, 300, "seconds")] = 10.0
    # After a failed registration pjsua tries again after retry_seconds, moved by a random amount within
    # +-retry_jitter_seconds (pjsua's default is 300 s: a panel out of service for 5 minutes, and a fleet that
    # lost its PBX together re-registering in the same second without the jitter).
    retry_seconds: Annotated[int, Range(5, 3600, "seconds")] = 30
    retry_jitter_seconds: Annotated[int, Range(0, 600, "seconds", "0: none")] = 10
    # How long before the registration expires it is refreshed.
    refresh_margin_seconds: Annotated[int, Range(1, 3600, "seconds")] = 5
    # CRLF keep-alives to the registrar over UDP keep a NAT binding open (0: off).
    keepalive_seconds: Annotated[int, Range(0, 3600, "seconds", "0: off")] = 15

    def __post_init__(self) -> None:
        # The two spellings agree from here on; a disagreement is reported by problems().
        if self.registrars and not self.registrar:
            object.__setattr__(self, "registrar", self.registrars[0])
        elif self.registrar and not self.registrars:
            object.__setattr__(self, "registrars", (self.registrar,))

    def problems(self) -> list[str]:
        # pjsip writes the From header without the idUri's port: a port here is silently lost.
        out = range_problems(self)
        out += uri_problems("uri", self.uri, port_allowed=False)
        if self.registrars and self.registrar != self.registrars[0]:
            out.append(
                f"registrar and registrars: registrar {self.registrar!r} is not the first of registrars; "
                "give the ordered list in registrars only"
            )
        for i, registrar in enumerate(self.registrars):
            out += uri_problems(f"registrars[{i}]" if len(self.registrars) > 1 else "registrar", registrar)
        if len(set(self.registrars)) != len(self.registrars):
            out.append("registrars: the same registrar is listed twice")
        if self.retry_jitter_seconds >= self.retry_seconds:
            out.append(
                f"retry_jitter_seconds: {self.retry_jitter_seconds} is not below retry_seconds {self.retry_seconds} "
                "(the jitter moves each retry by up to that much either way)"
            )
        if self.registrars and self.refresh_margin_seconds >= self.register_expiry:
            out.append(
                f"refresh_margin_seconds: {self.refresh_margin_seconds} is not below register_expiry "
                f"{self.register_expiry}: the registration would be refreshed before it was made"
            )
        if self.password and self.password_file:
            out.append("password and password_file: give one, not both")
        if (self.password or self.password_file) and not self.username:
            # pjsua only answers a digest challenge with a user name: registration would fail with 401.
            key = "password" if self.password else "password_file"
            out.append(f"{key}: given without username; set username (the account's digest user name)")
        return out


@dataclass(frozen=True)
class SipConfig:
    transport: Literal["udp", "tcp", "tls"] = "udp"
    bind_address: str = "0.0.0.0"  # an IPv4 address of this host, or 0.0.0.0 for all
    port: Annotated[int, Range(0, 65_535, note="0: any free port")] = 5060
    # Below Linux's ephemeral range (32768-60999): pjsua's default 4000x collides with outgoing sockets.
    rtp_port: Annotated[int, Range(1024, _RTP_CEILING - 2)] = 20000
    rtp_port_range: Annotated[int, Range(2, 16_384, "ports")] = 100
    account: SipAccountConfig = field(default_factory=SipAccountConfig)
    inbound_allow: tuple[str, ...] = ()  # callers auto-answered; everyone else is refused
    # Addresses/networks an allowlisted call must come from. inbound_allow matches the From header, which
    # any caller can write; the source address of a UDP/TCP INVITE cannot be forged so easily. () = any.
    inbound_sources: tuple[str, ...] = ()
    inbound_refuse_status: Annotated[int, Range(400, 699, note="a 4xx, 5xx or 6xx status")] = 603
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_verify_server: bool = True
    srtp: Literal["disabled", "optional", "mandatory"] = "disabled"
    # Each call holds 2 of pjlib's 64 ioqueue sockets, and more are kept for paced refusals.
    max_calls: Annotated[int, Range(1, MAX_CALLS_LIMIT)] = 8
    # A confirmed call that receives no RTP for this long is hung up (far end gone silent, network dead).
    media_timeout_seconds: Annotated[float, Range(0, 3600, "seconds", "0: never")] = 20.0

    def problems(self) -> list[str]:
        out = range_problems(self)
        if self.bind_address not in ("", "0.0.0.0"):
            out += ipv4_problems("bind_address", self.bind_address)
        out += self._port_problems()
        for i, uri in enumerate(self.inbound_allow):
            out += uri_problems(f"inbound_allow[{i}]", uri)
        for i, network in enumerate(self.inbound_sources):
            try:
                parsed = ipaddress.ip_network(network, strict=False)
            except ValueError:
                out.append(f"inbound_sources[{i}]: {network!r} is not an IP address or network (10.0.0.5, 10.0.0.0/24)")
                continue
            if parsed.version == 6:
                out.append(f"inbound_sources[{i}]: {network!r} is IPv6; the panel speaks SIP over IPv4 only")
        for i, registrar in enumerate(self.account.registrars):
            key = f"account.registrars[{i}]" if len(self.account.registrars) > 1 else "account.registrar"
            out += dial_problems(key, registrar, self.transport)
        out += dial_problems("account.uri", self.account.uri, self.transport)
        out += self._tls_problems()
        return out

    def _port_problems(self) -> list[str]:
        out: list[str] = []
        rtp_end = self.rtp_port + self.rtp_port_range - 1
        if rtp_end >= _RTP_CEILING:
            out.append(
                f"rtp_port: {self.rtp_port} + rtp_port_range {self.rtp_port_range} reaches {rtp_end}, inside Linux's "
                f"ephemeral range (32768-60999); keep rtp_port + rtp_port_range <= {_RTP_CEILING}"
            )
        if self.rtp_port <= self.port <= rtp_end:
            out.append(f"rtp_port: the RTP ports {self.rtp_port}..{rtp_end} include the SIP port {self.port}")
        if self.rtp_port_range < 2 * self.max_calls:
            # pjsua takes an RTP and an RTCP port per call: fewer ports than that and calls fail to be placed.
            out.append(
                f"rtp_port_range: {self.rtp_port_range} ports cannot carry max_calls = {self.max_calls} calls "
                f"(2 ports each); at least {2 * self.max_calls}"
            )
        return out

    def _tls_problems(self) -> list[str]:
        out: list[str] = []
        if self.transport == "tls" and not self.tls_ca_file and self.tls_verify_server:
            out.append("tls_ca_file: required with transport = 'tls' and tls_verify_server = true")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            out.append("tls_cert_file and tls_key_file: give both (a certificate needs its key) or neither")
        if self.srtp == "mandatory" and self.transport != "tls":
            # pjsua only sends SRTP keys over a secure transport: every call would fail to be placed.
            out.append("srtp: 'mandatory' needs transport = 'tls' (SRTP keys travel in the signalling)")
        return out
