"""SIP OPTIONS ping, done by the loop with its own socket rather than pjsua2.

pjsua2 offers no out-of-dialog request API (only ``Call.sendRequest`` inside a call), so a self-test
"is the PBX there and answering SIP" is simplest as a tiny stateless request/response over UDP or TCP.
It checks reachability of the peer, not pjsua2's own stack; for that, use the registration snapshot.
"""

from __future__ import annotations

import random
import re

import anyio

from daemon.errors import SipError
from daemon.sip._uri import parse_sip_uri

__all__ = ["options_ping"]

_STATUS = re.compile(rb"^SIP/2\.0 (\d{3}) ")


def _request(uri: str, transport: str, local: tuple[str, int]) -> bytes:
    tag = random.getrandbits(32)
    branch = f"z9hG4bK{random.getrandbits(48):x}"
    host, port = local
    return (
        f"OPTIONS {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport.upper()} {host}:{port};branch={branch};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:selftest@{host}>;tag={tag:x}\r\nTo: <{uri}>\r\n"
        f"Call-ID: {random.getrandbits(64):x}@{host}\r\nCSeq: 1 OPTIONS\r\n"
        f"Accept: application/sdp\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def options_ping(uri: str, *, within: float = 2.0, transport: str = "udp") -> int:
    """Send OPTIONS to ``uri`` and return the first final status code (provisional ones are skipped)."""
    target = parse_sip_uri(uri)
    if target is None:
        raise SipError(f"options_ping: {uri!r} is not a SIP URI")
    if transport == "tls":
        raise SipError("options_ping: not implemented over TLS; use the registration state")
    port = target.port or 5060
    host = target.host.strip("[]")
    with anyio.move_on_after(within):
        if transport == "tcp":
            async with await anyio.connect_tcp(host, port) as stream:
                local = stream.extra(anyio.abc.SocketAttribute.local_address)
                await stream.send(_request(uri, "tcp", (str(local[0]), int(local[1]))))
                buffer = b""
                while True:
                    buffer += await stream.receive()
                    for line in buffer.split(b"\r\n"):
                        m = _STATUS.match(line)
                        if m and int(m.group(1)) >= 200:
                            return int(m.group(1))
        else:
            async with await anyio.create_connected_udp_socket(host, port) as udp:
                local = udp.extra(anyio.abc.SocketAttribute.local_address)
                await udp.send(_request(uri, "udp", (str(local[0]), int(local[1]))))
                while True:
                    m = _STATUS.match(await udp.receive())
                    if m and int(m.group(1)) >= 200:
                        return int(m.group(1))
    raise SipError(f"options_ping: no answer from {uri} within {within} s", status=408)
