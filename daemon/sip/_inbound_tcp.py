"""Which inbound TCP/TLS connections the SIP owner shuts down. Pure: no pjsua2, tested with plain numbers.

Why: pjsip keeps a connection someone opened to the panel's SIP port and never wrote to for ever (its
``PJSIP_TCP_INITIAL_TIMEOUT`` is 0, off, in the wheel and a default source build, and pjsua2 cannot set
it), and every connection takes one of pjlib's 64 socket slots (the select ioqueue's), shared with the
RTP/RTCP sockets each call needs. Measured: 64 idle connections made the panel's next dial fail with
PJ_ETOOMANY for as long as they stayed. So (docs/pjsua2.md, "Inbound TCP connections"):

* at most :data:`INBOUND_TCP_CAP` inbound connections are kept; beyond that the oldest idle ones go;
* any inbound connection idle (no transaction, dialog or call holding it: pjsip's reference count is 0)
  for :data:`INBOUND_TCP_IDLE_S` after it was accepted goes (a PBX simply connects again when it needs to);
* a busy connection is never shut: it carries a request or a call.

Connections the panel opened itself (to its registrar, to residents) are not inbound and never counted.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["INBOUND_TCP_CAP", "INBOUND_TCP_IDLE_S", "Connection", "to_reap"]

INBOUND_TCP_CAP = 4  # a PBX uses one; a few phones calling the panel directly over TCP
INBOUND_TCP_IDLE_S = 30.0


@dataclass(frozen=True)
class Connection:
    key: int  # the transport's address: identifies it while pjsip has not destroyed it
    accepted_at: float  # monotonic seconds
    busy: bool  # pjsip holds a reference to it


def to_reap(connections: list[Connection], now: float, cap: int, idle_s: float) -> list[int]:
    """The keys of the connections to shut down now, oldest first."""
    idle = sorted((c for c in connections if not c.busy), key=lambda c: c.accepted_at)
    excess = max(0, len(connections) - cap)
    doomed = idle[:excess]
    doomed += [c for c in idle[excess:] if now - c.accepted_at >= idle_s]
    return [c.key for c in doomed]
