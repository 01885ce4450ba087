"""The owner thread's part that turns pjsua2's call and media state callbacks into the loop's SIP events.

A part of :class:`~daemon.sip._pj_owner.PjOwner`, like the others: it runs on the owner thread only, inside
the callbacks :class:`~daemon.sip._pj_calls.PjCall` forwards, and reports through the shared
:class:`~daemon.sip._pj_calls.CallBook`.
"""

from __future__ import annotations

import logging
import time

from daemon.sip._pj_call_commands import CallCommands
from daemon.sip._pj_calls import CallBook
from daemon.sip._pj_local import LocalPrompts
from daemon.sip._pj_media import MediaCommands
from daemon.sip._teardown_pace import TeardownPace
from daemon.sip.types import CallAnswered, CallEnded, CallRinging, CallState, MediaActive

__all__ = ["CallStates"]

log = logging.getLogger("daemon.sip._pj_owner")  # one logger name for the owner thread's messages


class CallStates:
    """Call and media state changes: ringing, answered, ended (and the call's record dropped), media up."""

    def __init__(
        self, book: CallBook, calls: CallCommands, media: MediaCommands, local: LocalPrompts, pace: TeardownPace
    ) -> None:
        self._book, self._calls, self._media, self._local, self._pace = book, calls, media, local, pace

    def on_call_state(self, generation: int, state: CallState, code: int, reason: str, local: bool) -> None:
        rec = self._book.records.get(generation)
        if rec is None:
            return
        rec.state, rec.last_code, rec.last_reason = state, code, reason
        if state is CallState.EARLY and rec.handle.direction == "outgoing" and not rec.rang:
            rec.rang = True
            self._book.emit(CallRinging(rec.handle, code))
        elif state is CallState.CONFIRMED:
            rec.ring_deadline = None
            rec.answered_at = time.monotonic()
            if rec.media_active:  # usually so: the offer/answer completes before CONFIRMED
                self._calls.media_watch.start(generation, rec.answered_at)
            log.info("sip %s: answered", rec.handle)
            self._book.emit(CallAnswered(rec.handle))
        elif state is CallState.DISCONNECTED and rec.dialing:
            # Inside makeCall: the dial itself failed (no transport, DNS...). The dial raises DialError;
            # no CallEnded for a handle the loop never got.
            del self._book.records[generation]
            self._pace.note(time.monotonic())  # its media sockets, if made, were closed: they count
            log.debug("sip %s: dial failed in pjsua: %d %s", rec.handle, code, reason)
        elif state is CallState.DISCONNECTED:
            # Dropped now, inside the DISCONNECTED callback: kept any longer, the Call would stay bound to
            # a call id pjsua reuses, and deleting it later would hang up the *next* call on that id.
            del self._book.records[generation]
            self._pace.note(time.monotonic())
            self._calls.media_watch.stop(generation)
            rec.player = rec.recorder = None
            self._local.refresh()  # before CallEnded: the loop's next prompt may take the card back
            local = local and not rec.by_us and rec.end_override is None
            code, reason = rec.end_override or (code, reason)
            how = " (by us)" if rec.by_us else " (no response: status made up by pjsip)" if local else ""
            level = logging.DEBUG if rec.refused else logging.INFO  # a refusal was logged (within a budget)
            log.log(level, "sip %s: ended %d %s%s", rec.handle, code, reason, how)
            self._book.emit(CallEnded(rec.handle, code, reason, rec.by_us, local))

    def on_media_state(self, generation: int, active: bool) -> None:
        rec = self._book.records.get(generation)
        if rec is None:
            return
        if active:
            self._media.keep_clock(time.monotonic(), True)  # before the first connection: it needs the clock
            self._media.connect_media(rec)
        if active and not rec.media_active:
            self._book.emit(MediaActive(rec.handle))
        rec.media_active = active
        # Watched only while answered and active: a call on hold receives no RTP by design. Every active
        # update restarts the clock (a renegotiated stream gets the full timeout again, its counter restarts).
        if active and rec.state is CallState.CONFIRMED:
            self._calls.media_watch.start(generation, time.monotonic())
        elif not active:
            self._calls.media_watch.stop(generation)
