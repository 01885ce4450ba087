"""How the configuration checks a SIP URI: through the one parser, :class:`daemon.sip._uri.SipUri`.

Imported lazily: ``daemon.sip``'s package imports the engine, which imports this configuration package, so a
module-level import from here would be a cycle whenever the configuration is imported first.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from daemon.sip._uri import SipUri

__all__ = ["ACCEPTED_URI", "dial_problems", "uri_problems"]

ACCEPTED_URI = "accepted: sip:user@host[:port][;transport=...] or sips:..."

Transport = Literal["udp", "tcp", "tls"]


@lru_cache(maxsize=65_536)
def _parsed(value: str) -> SipUri | str:
    """The URI, or why it is not one. Cached: a directory's thousands of residents are each checked twice (on
    their own, then against the transport), and a reload checks them all again."""
    from daemon.sip._uri import SipUri, SipUriError

    try:
        return SipUri.parse(value)
    except SipUriError as exc:
        return str(exc)


def uri_problems(key: str, value: str, *, port_allowed: bool = True) -> list[str]:
    """Problems of ``value`` as a SIP URI (empty when it parses)."""
    uri = _parsed(value)
    if isinstance(uri, str):
        return [f"{key}: {value!r} is not a SIP URI: {uri}; {ACCEPTED_URI}"]
    if not port_allowed and uri.port is not None:
        return [
            f"{key}: {value!r} has a port; pjsip drops it from the From header, so nobody would see it: "
            "write the URI without the port (the port the panel listens on is sip.port)"
        ]
    return []


def dial_problems(key: str, value: str, transport: Transport) -> list[str]:
    """Problems of ``value`` as a URI the panel dials over its one ``transport`` (syntax checked elsewhere)."""
    uri = _parsed(value)
    if isinstance(uri, str):
        return []  # reported by uri_problems where the value is checked on its own
    if uri.scheme == "sips" and transport != "tls":
        return [f"{key}: {value!r} is a sips: URI, which needs sip.transport = 'tls' (it is {transport!r})"]
    wanted = uri.transport
    if wanted is not None and wanted != transport:
        return [
            f"{key}: {value!r} asks for transport={wanted} but the panel's sip.transport is {transport!r}: "
            f"pjsua has no {wanted} transport to dial it with; drop the parameter or change sip.transport"
        ]
    return []
