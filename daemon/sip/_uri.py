"""The one SIP URI parser (no pjsua2 needed): config validation, allowlist matching, OPTIONS pings.

:meth:`SipUri.parse` reads a bare URI strictly (a simplified RFC 3261 19.1 grammar: what pjsua will actually
dial) into a frozen :class:`SipUri`, or raises :class:`SipUriError` saying what is wrong. :func:`parse_sip_uri`
pulls the URI out of a header value (``"Door" <sip:door@10.0.0.5;ob>;tag=x``) with the same grammar and never
raises: a caller's From is untrusted input. The panel speaks IPv4 only, so IPv6 hosts are refused with that reason.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from daemon.errors import IntercomError

__all__ = [
    "TRANSPORT_PARAMS",
    "SipUri",
    "SipUriError",
    "caller_allowed",
    "parse_sip_uri",
    "source_allowed",
]

TRANSPORT_PARAMS = frozenset({"udp", "tcp", "tls", "sctp", "ws", "wss"})
DEFAULT_PORT = 5060

# RFC 3261 25.1: user = 1*( unreserved / escaped / user-unreserved ).
_USER = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_PARAM_VALUE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()\[\]/:&+$]|%[0-9A-Fa-f]{2})+")
_NUMERIC_HOST = re.compile(r"[0-9.]+")


class SipUriError(IntercomError, ValueError):
    """Text that is not a dialable SIP URI; the message says what is wrong with it."""


@dataclass(frozen=True)
class SipUri:
    scheme: Literal["sip", "sips"]
    user: str  # "" when the URI names a host only (a registrar)
    host: str  # lower case: an IPv4 address or a host name
    port: int | None = None  # None: the transport's default (5060, 5061 for TLS)
    params: tuple[tuple[str, str], ...] = ()  # URI parameters in order, names in lower case

    @property
    def transport(self) -> str | None:
        """The ``;transport=`` parameter (lower case), or None."""
        return self.param("transport")

    def param(self, name: str) -> str | None:
        return next((value for key, value in self.params if key == name), None)

    def same_party(self, other: SipUri) -> bool:
        """True when ``other`` is the same user at the same host; the port counts only where ``self`` has one."""
        if self.user != other.user or self.host != other.host:
            return False
        return self.port is None or self.port == (other.port or DEFAULT_PORT)

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a bare SIP URI strictly; raise :class:`SipUriError` naming the first thing wrong."""
        return _parse(text)

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        params = "".join(f";{k}={v}" if v else f";{k}" for k, v in self.params)
        return f"{self.scheme}:{user}{self.host}{port}{params}"


def _parse(text: str) -> SipUri:
    if not text or any(c.isspace() or c in '<>"' for c in text):
        raise SipUriError('empty, or has spaces or <>" (write the bare URI, e.g. sip:101@10.0.0.5)')
    scheme, colon, rest = text.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips"):
        raise SipUriError("does not start with sip: or sips:")
    user = ""
    if "@" in rest:
        user, _, rest = rest.partition("@")
        user = _user(user)
        if "@" in rest:
            raise SipUriError("has more than one @")
    if "?" in rest:
        raise SipUriError("URI headers (?...) are not supported")
    hostport, *params = rest.split(";")
    host, port = _hostport(hostport)
    return SipUri("sips" if scheme.lower() == "sips" else "sip", user, host, port, _params(params))


def _user(user: str) -> str:
    if ":" in user:
        raise SipUriError("has a password in it (user:password@); put the password in sip.account.password_file")
    if not _USER.fullmatch(user):
        raise SipUriError(f"user part {user!r} is empty or has characters a SIP URI cannot carry unescaped")
    return user


def _hostport(hostport: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        raise SipUriError("IPv6 addresses are not supported (the panel speaks SIP over IPv4 only)")
    host, colon, port_text = hostport.partition(":")
    if not host:
        raise SipUriError("has no host")
    port: int | None = None
    if colon:
        digits = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
        if not digits or not 1 <= int(port_text) <= 65535:
            raise SipUriError(f"port {port_text!r} is not a port number 1..65535")
        port = int(port_text)
    if _NUMERIC_HOST.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise SipUriError(f"host {host!r} is not an IPv4 address (four numbers 0..255)") from None
    elif len(host) > 253 or not all(_LABEL.fullmatch(label) for label in host.split(".")):
        raise SipUriError(f"host {host!r} is not a host name (letters, digits, '-' and dots)")
    return host.lower(), port


def _params(raw: list[str]) -> tuple[tuple[str, str], ...]:
    params: list[tuple[str, str]] = []
    for item in raw:
        name, eq, value = item.partition("=")
        if not _TOKEN.fullmatch(name) or (eq and not _PARAM_VALUE.fullmatch(value)):
            raise SipUriError(f"parameter {item!r} is not name or name=value")
        name = name.lower()
        if any(name == seen for seen, _ in params):
            raise SipUriError(f"parameter {name!r} is given twice")
        if name == "transport":
            value = value.lower()
            if value not in TRANSPORT_PARAMS:
                raise SipUriError(f"transport {value!r} is not one of {', '.join(sorted(TRANSPORT_PARAMS))}")
        params.append((name, value))
    return tuple(params)


def parse_sip_uri(header: str) -> SipUri | None:
    """The SIP URI in a header value (name-addr ``"x" <uri>;tag`` or a bare ``uri;tag``), None if it has none."""
    start = header.find("<")
    if start >= 0:
        end = header.find(">", start)
        candidate = header[start + 1 : end] if end > 0 else ""
    else:
        # Without angle brackets the parameters after the URI are the header's (RFC 3261 20.10).
        candidate = header.split(";", 1)[0].strip()
    try:
        return _parse(candidate)
    except SipUriError:
        return None


def caller_allowed(remote: str, allowlist: tuple[str, ...]) -> bool:
    """Is the caller ``remote`` (a From header value) on ``allowlist``? Unparsable callers never are."""
    caller = parse_sip_uri(remote)
    if caller is None:
        return False
    return any(entry is not None and entry.same_party(caller) for entry in _allowlist(allowlist))


@functools.cache
def _allowlist(entries: tuple[str, ...]) -> tuple[SipUri | None, ...]:
    """The config's allowlist, parsed once (validated at load, so every entry parses)."""
    return tuple(parse_sip_uri(entry) for entry in entries)


def source_allowed(source: str, networks: tuple[str, ...]) -> bool:
    """Did the INVITE come from one of ``networks`` (config ``inbound_sources``)? ``source`` is pjsip's
    "host:port" ("[v6]:port" for IPv6). An empty ``networks`` trusts any source; an unparsable one, none."""
    if not networks:
        return True
    host = (source.rsplit(":", 1)[0] if ":" in source else source).strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in _parsed(networks))


@functools.cache
def _parsed(networks: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The config's networks, parsed once (validated at load, so they parse)."""
    return tuple(ipaddress.ip_network(n, strict=False) for n in networks)
