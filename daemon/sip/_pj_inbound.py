"""The SIP owner's inbound calls: each is answered (allowlisted caller) or refused on a later turn of the
owner thread, never inside ``onIncomingCall`` (refusing an INVITE without SDP there aborts the process), and
refusals go at the pace of :mod:`daemon.sip._teardown_pace` (an INVITE flood refused all at once aborts it
too). A part of :class:`~daemon.sip._pj_owner.PjOwner`; everything here runs on the owner thread."""

from __future__ import annotations

import logging
import time

import pjsua2 as pj

from daemon.config import SipConfig
from daemon.sip._log_budget import LogBudget
from daemon.sip._pj_calls import CallBook, CallRecord, PjCall
from daemon.sip._teardown_pace import TeardownPace
from daemon.sip._uri import caller_allowed, source_allowed
from daemon.sip.types import CallHandle, CallState, IncomingCall

__all__ = ["InboundCalls"]

log = logging.getLogger("daemon.sip._pj_owner")  # one logger name for the owner thread's messages


class InboundCalls:
    """Inbound calls between ``onIncomingCall`` and their answer or refusal."""

    def __init__(self, config: SipConfig, book: CallBook, pace: TeardownPace) -> None:
        self._config = config
        self._book = book
        self._pace = pace
        self._pending: list[tuple[int, bool]] = []  # (generation, allowed), oldest first
        # Anyone can send INVITEs: lines about callers that are refused are budgeted (allowed ones are not).
        self._refusals_log = LogBudget(log, "lines about refused callers", budget=10, window=10.0)

    def clear(self) -> None:
        """Forget the waiting calls (shutdown: the owner hangs every call up itself)."""
        self._pending.clear()

    def on_incoming(self, call: PjCall, source: str) -> None:
        ci = call.getInfo()
        generation = self._book.next_generation()
        call.generation = generation
        handle = CallHandle(generation, call.getId(), "incoming", str(ci.remoteUri))
        self._book.records[generation] = CallRecord(handle, call, state=CallState.INCOMING)
        allowed = caller_allowed(handle.remote_uri, self._config.inbound_allow)
        now = time.monotonic()
        if allowed and not source_allowed(source, self._config.inbound_sources):
            allowed = False
            self._refusals_log.log(
                now,
                logging.WARNING,
                "sip %s: caller is on inbound_allow but the INVITE came from %s, not from inbound_sources: "
                "refusing (a forged From?)",
                handle,
                source,
            )
        # Answered or refused on the next turn, never in here: refusing an INVITE without SDP inside
        # onIncomingCall aborts the process.
        self._pending.append((generation, allowed))
        if allowed:
            log.info("sip %s: incoming from %s, allowed: answering", handle, source)
        else:
            self._refusals_log.log(now, logging.INFO, "sip %s: incoming from %s, not allowed: refusing", handle, source)
        self._book.emit(IncomingCall(handle, handle.remote_uri, allowed))

    def settle_pending(self) -> None:
        """Answer allowed callers at once; refuse the others only as fast as the teardown pace allows (an
        INVITE flood refused all at once aborts the process: _teardown_pace). The rest wait for a later turn."""
        self._refusals_log.flush(time.monotonic())
        pending, self._pending = self._pending, []
        for generation, allowed in pending:
            if allowed or self._pace.room(time.monotonic()) > 0:
                self._settle(generation, allowed)
            else:
                self._pending.append((generation, allowed))
        if self._pending:
            self._pace.held_back += 1
            if self._pace.held_back % 100 == 1:
                log.warning(
                    "sip: INVITE flood: refusals paced to %d per %.1f s (%d waiting, held back %d times)",
                    self._pace.budget,
                    self._pace.window,
                    len(self._pending),
                    self._pace.held_back,
                )

    def refuse_one_waiting(self) -> bool:
        """Refuse the oldest waiting unwanted call now, out of pace, to free a call slot for our own dial."""
        for i, (generation, allowed) in enumerate(self._pending):
            if not allowed and generation in self._book.records:
                del self._pending[i]
                self._settle(generation, allowed)
                return True
        return False

    def _settle(self, generation: int, allowed: bool) -> None:
        rec: CallRecord | None = self._book.records.get(generation)
        if rec is None or rec.state is not CallState.INCOMING:
            return
        prm = pj.CallOpParam()
        try:
            if allowed:
                prm.statusCode = 200
                rec.call.answer(prm)
            else:
                rec.by_us = rec.refused = True
                prm.statusCode = self._config.inbound_refuse_status
                rec.call.hangup(prm)
        except pj.Error as exc:
            log.warning("sip %s: could not %s: %s", rec.handle, "answer" if allowed else "refuse", exc.info())
