"""pjsua2 subclasses whose callbacks run on the SIP owner thread (the ``_pj_*``
modules are the only ones importing pjsua2).

Every callback body is wrapped by :func:`_guard`: an exception escaping into pjsua2 would be printed by
SWIG and would leave ``sys.last_traceback`` holding this frame, and so this ``Call``, alive past
``libDestroy`` (which aborts the process when it is finally collected). The guard also counts callbacks
that ran on a thread other than the owner, which the tests assert never happens.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import pjsua2 as pj

from daemon.bridge import EventChannel
from daemon.errors import CallGoneError
from daemon.sip._registrars import RegisterReply
from daemon.sip.types import CallHandle, CallState, SipEvent

__all__ = ["CallBook", "CallRecord", "OwnerHooks", "PjAccount", "PjCall", "PjEndpoint", "PjPlayer"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., None])

_BRANCH = re.compile(r"^Via:[^\r\n]*?;branch=([^;,\s]+)", re.M | re.I)  # the first Via: ours

_STATES = {
    pj.PJSIP_INV_STATE_CALLING: CallState.CALLING,
    pj.PJSIP_INV_STATE_INCOMING: CallState.INCOMING,
    pj.PJSIP_INV_STATE_EARLY: CallState.EARLY,
    pj.PJSIP_INV_STATE_CONNECTING: CallState.CONNECTING,
    pj.PJSIP_INV_STATE_CONFIRMED: CallState.CONFIRMED,
    pj.PJSIP_INV_STATE_DISCONNECTED: CallState.DISCONNECTED,
}


class OwnerHooks(Protocol):
    """What the pjsua2 objects report to; implemented by the owner thread's :class:`PjOwner`."""

    owner_thread_id: int
    wrong_thread_callbacks: int
    callback_errors: int
    fault_once: bool

    def on_incoming(self, call: PjCall, source: str) -> None: ...
    def on_reg_state(self, index: int, active: bool, expires: int, reply: RegisterReply) -> None: ...
    def on_call_state(self, generation: int, state: CallState, code: int, reason: str, local: bool) -> None: ...
    def on_media_state(self, generation: int, active: bool) -> None: ...
    def on_dtmf(self, generation: int, digit: str, method: int) -> None: ...
    def on_invite_sent(self, generation: int, branch: str) -> None: ...
    def on_transport_state(self, handle: Any, state: int) -> None: ...


def _injected_fault() -> None:
    raise RuntimeError("injected callback fault")


def _guard(fn: F) -> F:
    """Wrap a pjsua2 callback: check the thread, never let an exception reach SWIG."""

    def wrapper(self: Any, *args: Any) -> None:
        hooks: OwnerHooks = self.hooks
        if threading.get_ident() != hooks.owner_thread_id:
            hooks.wrong_thread_callbacks += 1
            log.error("pjsua2 callback %s ran on thread %s, not the owner", fn.__name__, threading.current_thread())
        try:
            if hooks.fault_once:
                hooks.fault_once = False  # test hook: prove a raising callback cannot take the daemon down
                _injected_fault()
            fn(self, *args)
        except Exception as exc:
            hooks.callback_errors += 1
            # Logged as text, never with exc_info: a handler keeping the record (pytest's, a MemoryHandler)
            # would keep the traceback, its frames, and so this Call, alive past libDestroy.
            text = "".join(traceback.format_exception(exc))
            exc.__traceback__ = None
            log.error("pjsua2 callback %s raised; swallowed so pjsua2 goes on:\n%s", fn.__name__, text)

    wrapper.__name__ = fn.__name__
    return wrapper  # type: ignore[return-value]


def _no_answer_from_far_end(event: Any) -> bool:
    """Did a transaction end without a response from the far end (a transport error, a timeout)? pjsip
    then makes up the status itself (503, 408): a local failure, not something the far end said."""
    if event.type != pj.PJSIP_EVENT_TSX_STATE:
        return False
    return int(event.body.tsxState.type) in (pj.PJSIP_EVENT_TRANSPORT_ERROR, pj.PJSIP_EVENT_TIMER)


class PjEndpoint(pj.Endpoint):  # type: ignore[misc]
    def __init__(self, hooks: OwnerHooks) -> None:
        super().__init__()
        self.hooks = hooks

    @_guard
    def onTransportState(self, prm: Any) -> None:
        self.hooks.on_transport_state(prm.hnd, int(prm.state))


class PjAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, hooks: OwnerHooks, registrar_index: int = 0) -> None:
        super().__init__()
        self.hooks = hooks
        self.registrar_index = registrar_index  # which of [sip.account] registrars this account registers with

    @_guard
    def onRegState(self, prm: Any) -> None:
        info = self.getInfo()
        expires = int(info.regExpiresSec)
        # pjsua reports "no registration" as -1 in an unsigned field: 4294967295.
        expires = 0 if expires >= 2**31 else expires
        # A response received fills rdata; a failure pjsip made up (timeout, transport error) leaves it empty.
        reply = RegisterReply(int(prm.status), int(prm.code), str(prm.reason), responded=bool(prm.rdata.wholeMsg))
        self.hooks.on_reg_state(self.registrar_index, bool(info.regIsActive), expires, reply)

    @_guard
    def onIncomingCall(self, prm: Any) -> None:
        # The Call must be kept from here on: one that is collected when this callback returns hangs up.
        # It is never refused from in here (that aborts on an INVITE without SDP): see InboundCalls.on_incoming.
        self.hooks.on_incoming(PjCall(self, self.hooks, prm.callId), str(prm.rdata.srcAddress))


class PjCall(pj.Call):  # type: ignore[misc]
    """A pjsua2 call that knows its engine generation (set before any callback can need it)."""

    def __init__(self, account: PjAccount, hooks: OwnerHooks, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self.hooks = hooks
        self.generation = 0

    @_guard
    def onCallState(self, prm: Any) -> None:
        ci = self.getInfo()
        state = _STATES.get(ci.state, CallState.CALLING)
        self.hooks.on_call_state(
            self.generation, state, int(ci.lastStatusCode), str(ci.lastReason), _no_answer_from_far_end(prm.e)
        )

    @_guard
    def onCallMediaState(self, prm: Any) -> None:
        ci = self.getInfo()  # bound first: ``self.getInfo().media`` reads freed memory
        media = ci.media
        active = any(m.type == pj.PJMEDIA_TYPE_AUDIO and m.status == pj.PJSUA_CALL_MEDIA_ACTIVE for m in media)
        self.hooks.on_media_state(self.generation, active)

    @_guard
    def onCallTsxState(self, prm: Any) -> None:
        # Our INVITE's Via branch names its transaction: kept so that a call cancelled before any final
        # response can have its transaction ended early (CallCommands, _pj_native) and its slot freed.
        tsx = prm.e.body.tsxState.tsx
        if tsx.role == pj.PJSIP_ROLE_UAC and tsx.method == "INVITE" and tsx.state == pj.PJSIP_TSX_STATE_CALLING:
            found = _BRANCH.search(str(tsx.lastTx.wholeMsg))
            if found:
                self.hooks.on_invite_sent(self.generation, found.group(1))

    @_guard
    def onDtmfDigit(self, prm: Any) -> None:
        self.hooks.on_dtmf(self.generation, str(prm.digit), int(prm.method))


class PjPlayer(pj.AudioMediaPlayer):  # type: ignore[misc]
    def __init__(self, hooks: OwnerHooks, generation: int) -> None:
        super().__init__()
        self.hooks = hooks
        self.generation = generation
        self.loop = False
        self.reached_end = False

    def onEof2(self) -> None:
        # Measured: unlike every other callback, this one runs on pjmedia's clock thread even with
        # mainThreadOnly. So it only sets a flag (atomic under the GIL); the owner thread polls it.
        self.reached_end = True


@dataclass(eq=False)
class CallRecord:
    """Everything the owner knows about one live call. Holds the only strong reference to its ``PjCall``."""

    handle: CallHandle
    call: PjCall
    state: CallState = CallState.CALLING
    last_code: int = 0
    last_reason: str = ""
    ring_deadline: float | None = None
    end_override: tuple[int, str] | None = None
    by_us: bool = False
    media_active: bool = False
    answered_at: float = 0.0
    rang: bool = False
    player: PjPlayer | None = None
    recorder: Any = None  # pj.AudioMediaRecorder
    sound_device: bool = False
    invite_branch: str = ""  # outgoing: the Via branch of our INVITE (its transaction's key)
    dialing: bool = False  # inside makeCall: an end reported now is the dial's failure, not a call's end
    refused: bool = False  # an unwanted inbound caller we refused (its end is logged at DEBUG: floods)


class CallBook:
    """The owner thread's live calls, shared by its parts (call commands, inbound, media), and the one way
    they report: :meth:`emit` posts straight into the loop's :class:`~daemon.bridge.EventChannel`, so a SIP
    event crosses the thread boundary once."""

    def __init__(self, channel: EventChannel[SipEvent]) -> None:
        self.records: dict[int, CallRecord] = {}
        self._generations = itertools.count(1)
        self._channel = channel

    def next_generation(self) -> int:
        """A number naming one call for the engine's whole life (pjsua's call ids are reused)."""
        return next(self._generations)

    def get(self, handle: CallHandle) -> CallRecord:
        rec = self.records.get(handle.generation)
        if rec is None:
            raise CallGoneError(f"{handle} has ended")
        return rec

    def emit(self, event: SipEvent) -> None:
        self._channel.post(event)
