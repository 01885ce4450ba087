"""SIP URI helpers that need no pjsua2: allowlist matching and host/port extraction."""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

__all__ = ["SipUri", "caller_allowed", "parse_sip_uri", "source_allowed"]

# Finds the URI inside a header value such as '"Door" <sip:door@10.0.0.5:5062;ob>;tag=x'.
_URI = re.compile(r"(sips?):(?:([^@\s<>;:]+)(?::[^@\s<>]*)?@)?(\[[^\]]+\]|[^\s<>;:?]+)(?::(\d+))?", re.I)


@dataclass(frozen=True)
class SipUri:
    scheme: str
    user: str
    host: str
    port: int | None

    def same_party(self, other: SipUri) -> bool:
        """True when ``other`` is the same user at the same host; the port counts only where ``self`` has one."""
        if self.user != other.user or self.host.lower() != other.host.lower():
            return False
        return self.port is None or self.port == (other.port or 5060)


def parse_sip_uri(text: str) -> SipUri | None:
    m = _URI.search(text)
    if m is None:
        return None
    return SipUri(m.group(1).lower(), m.group(2) or "", m.group(3), int(m.group(4)) if m.group(4) else None)


def caller_allowed(remote: str, allowlist: tuple[str, ...]) -> bool:
    """Is the caller ``remote`` (a From header value) on ``allowlist``? Unparsable callers never are."""
    caller = parse_sip_uri(remote)
    if caller is None:
        return False
    return any(entry is not None and entry.same_party(caller) for entry in map(parse_sip_uri, allowlist))


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
