"""The SIP owner's inbound TCP/TLS connections: tracked from pjsip's transport-state callback and shut down
by the rules of :mod:`daemon.sip._inbound_tcp` (the ``_pj_*`` modules are the only ones importing pjsua2).
A part of :class:`~daemon.sip._pj_owner.PjOwner`; everything here runs on the owner thread."""

from __future__ import annotations

import logging
from typing import Any

import pjsua2 as pj

from daemon.sip._inbound_tcp import INBOUND_TCP_CAP, INBOUND_TCP_IDLE_S, Connection, to_reap
from daemon.sip._pj_native import NativePjsip

__all__ = ["InboundConnections"]

log = logging.getLogger("daemon.sip._pj_owner")  # one logger name for the owner thread's messages

_REPORT_EVERY_S = 10.0  # anyone can open connections: what was shut is reported at most this often


class InboundConnections:
    def __init__(self, native: NativePjsip) -> None:
        self._native = native
        self._open: dict[int, tuple[Any, float]] = {}  # address -> (pjsua2 TransportHandle, accepted at)
        self.shut_total = 0
        self._unreported = 0
        self._reported_at = -_REPORT_EVERY_S

    def on_state(self, handle: Any, state: int, now: float) -> None:
        key = int(handle)
        if state == pj.PJSIP_TP_STATE_CONNECTED:
            if self._native.is_inbound_stream(key):
                self._open[key] = (handle, now)
        else:  # shut down, disconnected or destroyed: never touched again
            self._open.pop(key, None)

    def reap(self, ep: Any, now: float) -> None:
        if not self._open:
            return
        connections = [
            Connection(key, accepted, self._native.references(key) > 0) for key, (_, accepted) in self._open.items()
        ]
        for key in to_reap(connections, now, INBOUND_TCP_CAP, INBOUND_TCP_IDLE_S):
            handle, _ = self._open.pop(key)
            try:
                ep.transportShutdown(handle)  # its socket closes once pjsip destroys it (at once: unused)
            except pj.Error as exc:
                log.warning("sip: could not shut an inbound connection: %s", exc.info())
                continue
            self.shut_total += 1
            self._unreported += 1
        if self._unreported and now - self._reported_at >= _REPORT_EVERY_S:
            log.warning(
                "sip: shut %d idle inbound TCP/TLS connection(s) (idle %.0f s, or more than %d open); %d in all",
                self._unreported,
                INBOUND_TCP_IDLE_S,
                INBOUND_TCP_CAP,
                self.shut_total,
            )
            self._unreported = 0
            self._reported_at = now

    def clear(self) -> None:
        self._open.clear()
