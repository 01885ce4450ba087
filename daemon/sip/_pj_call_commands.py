"""The SIP owner's call commands: dial, hang up, DTMF, snapshots, and the deadlines the owner keeps for
calls (ring timeout, RTP inactivity). A part of :class:`~daemon.sip._pj_owner.PjOwner`; everything here runs
on the owner thread (the ``_pj_*`` modules are the only ones importing pjsua2)."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import pjsua2 as pj

from daemon.errors import DialError
from daemon.sip._media_watch import MediaWatch
from daemon.sip._pj_calls import CallBook, CallRecord, OwnerHooks, PjAccount, PjCall
from daemon.sip._pj_inbound import InboundCalls
from daemon.sip._pj_native import NativePjsip
from daemon.sip.types import CallHandle, CallSnapshot, CallState, DtmfMethod, StreamStats

__all__ = ["CallCommands"]

log = logging.getLogger("daemon.sip._pj_owner")  # one logger name for the owner thread's messages

_PJ_ETOOMANY = 70010
# How long a far end has to answer our CANCEL (or, before any provisional, to send one) before the INVITE
# transaction is ended here. A LAN phone answers within milliseconds; pjsip alone would wait 32 s.
CANCEL_GRACE_S = 4.0


class CallCommands:
    """Calls the loop asks for, and the timers that end them."""

    def __init__(self, book: CallBook, hooks: OwnerHooks, inbound: InboundCalls, media_timeout_seconds: float) -> None:
        self._book = book
        self._hooks = hooks
        self._inbound = inbound
        self.account: PjAccount | None = None  # set once the owner has created it
        self.max_calls = 0  # what the loaded pjsua2 allows at once: set at start
        self.media_watch = MediaWatch(media_timeout_seconds)
        self.native = NativePjsip()  # shared with the owner's other parts
        # Outgoing calls hung up before any final response: (deadline, INVITE branch, handle), oldest first.
        self._abandoned: list[tuple[float, str, CallHandle]] = []

    # -- commands -------------------------------------------------------------------------------------
    def dial(self, uri: str, ring_timeout: float | None) -> CallHandle:
        """Send an INVITE. Raises :class:`DialError` when pjsua refuses it here (no SIP status exists then)."""
        if self.account is None:
            raise DialError(f"dial {uri}: no SIP account (the engine has not started)")
        generation = self._book.next_generation()
        rec = CallRecord(CallHandle(generation, -1, "outgoing", uri), self._new_call(generation))
        if ring_timeout is not None:
            rec.ring_deadline = time.monotonic() + ring_timeout
        self._book.records[generation] = rec
        try:
            self._make_call(rec, uri)
        except pj.Error as exc:
            self._book.records.pop(generation, None)
            raise self._dial_error(uri, exc) from None
        except DialError:
            self._book.records.pop(generation, None)
            raise
        finally:
            rec.dialing = False
        if generation not in self._book.records:
            # pjsua reported DISCONNECTED inside makeCall yet returned success: nothing will follow.
            raise DialError(f"dial {uri}: pjsua ended the call at once: {rec.last_code} {rec.last_reason}")
        rec.handle = replace(rec.handle, slot=rec.call.getId())
        limit = "the visit's own ring timer" if ring_timeout is None else f"ring timeout {ring_timeout:g} s"
        log.info("sip %s: INVITE sent (%s)", rec.handle, limit)
        return rec.handle

    def _make_call(self, rec: CallRecord, uri: str) -> None:
        rec.dialing = True
        if self._placed(rec, uri):
            return
        # Every call slot is taken. The visitor's call goes first: free a slot held by a call we already
        # gave up on, else by a caller waiting to be refused (a paced flood), and try again after each: a retry
        # that still finds no room goes on to the next way of freeing one rather than failing the leg.
        while True:
            if self._reap_abandoned(time.monotonic(), force=True):
                log.warning("sip: call slots full of cancelled calls; ended their INVITEs early to dial %s", uri)
            elif self._inbound.refuse_one_waiting():
                log.warning("sip: call slots full of unwanted callers; refused one early to dial %s", uri)
            else:
                raise DialError(self._slots_full(uri), pj_status=_PJ_ETOOMANY)
            rec.call = self._new_call(rec.handle.generation)  # a fresh object: the failed one has no call id
            if self._placed(rec, uri):
                return

    @staticmethod
    def _placed(rec: CallRecord, uri: str) -> bool:
        """makeCall; False when every call slot is taken (PJ_ETOOMANY), any other failure raised."""
        try:
            rec.call.makeCall(uri, pj.CallOpParam(True))
        except pj.Error as exc:
            if exc.status != _PJ_ETOOMANY:
                raise
            return False
        return True

    def _slots_full(self, uri: str) -> str:
        return (
            f"dial {uri}: pjsua has no room for another call (PJ_ETOOMANY: its {self.max_calls} call slots, or "
            "pjlib's ioqueue socket keys, are all in use); nothing was sent"
        )

    def _dial_error(self, uri: str, exc: Any) -> DialError:
        status = int(exc.status)
        if status == _PJ_ETOOMANY:
            return DialError(self._slots_full(uri), pj_status=status)
        return DialError(f"dial {uri}: refused by pjsua, nothing was sent: {exc.reason}", pj_status=status)

    def _new_call(self, generation: int) -> PjCall:
        assert self.account is not None  # checked by dial
        call = PjCall(self.account, self._hooks)
        call.generation = generation
        return call

    def hangup(self, handle: CallHandle, status: int | None) -> None:
        self._hangup(self._book.get(handle), status or 0)

    def send_dtmf(self, handle: CallHandle, digits: str, method: DtmfMethod) -> None:
        rec = self._book.get(handle)
        if method == "info":
            prm = pj.CallSendDtmfParam()
            prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
            prm.digits = digits
            rec.call.sendDtmf(prm)
        else:
            rec.call.dialDtmf(digits)

    def snapshot(self, handle: CallHandle) -> CallSnapshot:
        rec = self._book.get(handle)
        answered = time.monotonic() - rec.answered_at if rec.answered_at else 0.0
        return CallSnapshot(
            rec.handle,
            rec.state,
            rec.last_code,
            rec.last_reason,
            rec.media_active,
            answered,
            rec.player is not None,
            rec.recorder is not None,
        )

    def live_calls(self) -> list[CallHandle]:
        return [rec.handle for rec in self._book.records.values()]

    # -- owner-side ------------------------------------------------------------------------------------
    def hangup_everything(self, reason: str) -> None:
        """Shutdown: end every call, saying why in its CallEnded."""
        for rec in list(self._book.records.values()):
            if rec.end_override is None:
                rec.end_override = (0, reason)
            self.hangup_quietly(rec, 0)

    def hangup_quietly(self, rec: CallRecord, status: int) -> None:
        try:
            self._hangup(rec, status)
        except pj.Error as exc:
            log.warning("sip %s: hang-up failed: %s", rec.handle, exc.info())

    def _hangup(self, rec: CallRecord, status: int) -> None:
        rec.by_us = True
        prm = pj.CallOpParam()
        prm.statusCode = status
        unanswered = rec.handle.direction == "outgoing" and rec.state in (CallState.CALLING, CallState.EARLY)
        rec.call.hangup(prm)  # fires DISCONNECTED synchronously in most states
        if unanswered and rec.invite_branch:
            # pjsua reports the end now but keeps the slot until the INVITE transaction ends (up to 32 s
            # when the far end is silent): ended here after a grace period (_pj_native says why).
            self._abandoned.append((time.monotonic() + CANCEL_GRACE_S, rec.invite_branch, rec.handle))

    def _reap_abandoned(self, now: float, *, force: bool = False) -> bool:
        """End the INVITE transactions of cancelled calls whose far end let the grace period pass (all of
        them when ``force``). True when that gave a call slot back."""
        freed = False
        while self._abandoned and (force or self._abandoned[0][0] <= now):
            _, branch, handle = self._abandoned.pop(0)
            before = self.native.calls_in_use()
            if not self.native.end_invite_transaction(branch):
                continue
            after = self.native.calls_in_use()
            # A far end that answered the CANCEL (487) gave the slot back then, but the INVITE transaction
            # lingers (Completed: 32 s over UDP), and ending it frees nothing. Counted as freed, it made a
            # dial give up instead of refusing a waiting caller (a ring group of 8 under an INVITE flood).
            if before is None or after is None or after < before:
                freed = True
                log.info("sip %s: no answer to the CANCEL; its INVITE transaction ended here, slot freed", handle)
            else:
                log.debug("sip %s: its INVITE transaction ended here; the far end had answered the CANCEL", handle)
        return freed

    def check_deadlines(self, now: float) -> None:
        """Cancel calls past their ring timeout; hang up answered calls whose RTP stopped."""
        for rec in list(self._book.records.values()):
            if rec.ring_deadline is not None and now >= rec.ring_deadline:
                rec.ring_deadline = None
                rec.end_override = (408, "ring timeout: no answer in time")
                log.info("sip %s: ring timeout, cancelling", rec.handle)
                self.hangup_quietly(rec, 0)
        self._check_media(now)
        self._reap_abandoned(now)

    def note_invite_branch(self, generation: int, branch: str) -> None:
        rec = self._book.records.get(generation)
        if rec is not None:
            rec.invite_branch = branch

    def _check_media(self, now: float) -> None:
        """Hang up confirmed calls whose RX packet count stopped growing (see _media_watch)."""
        watch = self.media_watch
        for generation in watch.due(now):
            rec = self._book.records.get(generation)
            count = self._rx_packets(rec) if rec is not None else None
            if rec is None or count is None:
                watch.stop(generation)  # ended, or no active audio stream left to watch
                continue
            silent = watch.feed(generation, count, now)
            if silent is not None:
                rec.end_override = (408, f"media timeout (no RTP for {watch.timeout:g} s)")
                log.warning(
                    "sip %s: no RTP received for %.1f s (%d packets in all), hanging up", rec.handle, silent, count
                )
                self.hangup_quietly(rec, 0)

    def stream_stats(self, handle: CallHandle) -> StreamStats | None:
        """The call's active audio stream's counters (jitter buffer, RTP received); None if it has no active audio."""
        rec = self._book.get(handle)
        index = self._active_audio_index(rec)
        if index is None:
            return None
        stat = rec.call.getStreamStat(index)
        jbuf, rx = stat.jbuf, stat.rtcp.rxStat
        info = rec.call.getStreamInfo(index)
        algo = info.jbDiscardAlgo  # an int on our build (swig-jb-discard-algo.patch), else a SWIG pointer
        return StreamStats(
            rx_packets=int(rx.pkt),
            rx_lost=int(rx.loss),
            rx_discarded=int(rx.discard),
            jbuf_frame_bytes=int(jbuf.frameSize),
            jbuf_lost=int(jbuf.lost),
            jbuf_discarded=int(jbuf.discard),
            jbuf_empty=int(jbuf.empty),
            jbuf_avg_delay_ms=int(jbuf.avgDelayMsec),
            jbuf_max_delay_ms=int(jbuf.maxDelayMsec),
            jbuf_prefetch=int(jbuf.prefetch),
            jbuf_discard_algo=algo if isinstance(algo, int) else None,
            vad=bool(info.audCodecParam.setting.vad),
            tx_packets=int(stat.rtcp.txStat.pkt),
        )

    @staticmethod
    def _active_audio_index(rec: CallRecord) -> int | None:
        ci = rec.call.getInfo()  # bound first: ``getInfo().media`` reads freed memory
        media = ci.media
        return next(
            (m.index for m in media if m.type == pj.PJMEDIA_TYPE_AUDIO and m.status == pj.PJSUA_CALL_MEDIA_ACTIVE),
            None,
        )

    def _rx_packets(self, rec: CallRecord) -> int | None:
        """RTP packets received so far on the call's active audio stream; None if it has none."""
        try:
            index = self._active_audio_index(rec)
            if index is None:
                return None
            return int(rec.call.getStreamStat(index).rtcp.rxStat.pkt)
        except pj.Error as exc:
            log.debug("sip %s: no stream statistics: %s", rec.handle, exc.info())
            return None
