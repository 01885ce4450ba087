"""Loop-side values of the SIP engine: call handles, snapshots and events.

Nothing here touches pjsua2. Everything is a frozen dataclass so that a value handed to the loop can never
be changed behind its back by the owner thread, and so that events can be compared in tests.
Every event carries ``at`` (``time.monotonic()`` when the owner thread saw it) so latency can be measured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

__all__ = [
    "CallAnswered",
    "CallEnded",
    "CallHandle",
    "CallRinging",
    "CallSnapshot",
    "CallState",
    "DtmfMethod",
    "DtmfReceived",
    "IncomingCall",
    "LocalPromptEnd",
    "LocalPromptEnded",
    "MediaActive",
    "PlaybackFinished",
    "RegistrationChanged",
    "RegistrationFailure",
    "RegistrationSnapshot",
    "SipEvent",
    "StreamStats",
]

DtmfMethod = Literal["rfc2833", "info"]


@dataclass(frozen=True, order=True)
class CallHandle:
    """Names one call for its whole life, and never another.

    ``generation`` is unique per engine and never reused; ``slot`` is pjsua's call id, which pjsua
    *does* reuse, so it is shown in logs only and never used to find a call. A command naming a handle
    whose call has ended raises :class:`~daemon.errors.CallGoneError`.
    """

    generation: int
    slot: int = field(compare=False)
    direction: Literal["outgoing", "incoming"] = field(compare=False)
    remote_uri: str = field(compare=False)

    def __str__(self) -> str:
        return f"call#{self.generation}(slot {self.slot}, {self.direction} {self.remote_uri})"


class CallState(Enum):
    CALLING = "calling"
    INCOMING = "incoming"
    EARLY = "early"
    CONNECTING = "connecting"
    CONFIRMED = "confirmed"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True)
class CallSnapshot:
    handle: CallHandle
    state: CallState
    last_code: int
    last_reason: str
    media_active: bool
    connect_seconds: float  # how long the call has been answered (0 before answer)
    playing: bool
    recording: bool


class RegistrationFailure(Enum):
    """Why a registration is not active. pjsip reports a REGISTER that could not even be sent (no route, a socket
    that cannot reach the address, a TCP connection refused) as a made-up "503 <local error text>", and one that
    nothing answered as a made-up 408; only a registrar's own response is a SIP status."""

    NONE = "none"  # registered (or not tried yet)
    REFUSED = "refused"  # the registrar answered with a failure status (401, 403, 503 of its own...): ``code``
    NO_ANSWER = "no_answer"  # nothing answered within pjsip's transaction timeout (408), or probes went unanswered
    TRANSPORT = "transport"  # a local transport error: nothing was sent or connected; ``code`` is 0


@dataclass(frozen=True)
class RegistrationSnapshot:
    configured: bool  # False for a direct-IP panel with no registrar
    active: bool
    code: int
    reason: str
    expires: int
    registrar: str = ""  # the registrar in use (or, none in use, the one that last failed); "" without any
    failure: RegistrationFailure = RegistrationFailure.NONE


def _now() -> float:
    return time.monotonic()


@dataclass(frozen=True)
class RegistrationChanged:
    """The panel's registration after a change: ``active`` when some registrar is in use, ``registrar`` which
    (or, none in use, the one that just failed); ``code``/``reason``/``expires`` are that registrar's, ``failure``
    what kind of failure it was (``code`` 0 for a local transport error: no SIP status was ever received)."""

    active: bool
    code: int
    reason: str
    expires: int = 0
    registrar: str = ""
    failure: RegistrationFailure = RegistrationFailure.NONE
    at: float = field(default_factory=_now, compare=False)


@dataclass(frozen=True)
class CallRinging:
    handle: CallHandle
    code: int = 180
    at: float = field(default_factory=_now, compare=False)


@dataclass(frozen=True)
class CallAnswered:
    handle: CallHandle
    at: float = field(default_factory=_now, compare=False)


@dataclass(frozen=True)
class MediaActive:
    handle: CallHandle
    at: float = field(default_factory=_now, compare=False)


@dataclass(frozen=True)
class CallEnded:
    """The call is over. ``code``/``reason`` say why (486 Busy Here, 408 ring timeout, 200 after a BYE...).

    ``by_us`` is True when this side ended it (hang-up command, ring timeout, refusal, shutdown).
    ``local`` is True when no response came from the far end at all (connection refused, transport error,
    no answer to the INVITE within pjsip's timeout): ``code`` (503, 408) was made up by pjsip, and nobody
    was reached, like a :class:`~daemon.errors.DialError` that happened after the INVITE left.
    """

    handle: CallHandle
    code: int
    reason: str
    by_us: bool = False
    local: bool = False
    at: float = field(default_factory=_now, compare=False)


@dataclass(frozen=True)
class IncomingCall:
    """Someone called the panel. ``allowed`` callers are being answered; the rest are being refused."""

    handle: CallHandle
    remote_uri: str
    allowed: bool
    at: float = field(default_factory=_now, compare=False)


@dataclass(frozen=True)
class DtmfReceived:
    """A digit the far end typed. Digits spell door codes: ``repr`` never shows it, so an event printed in
    a log line (a lost event, a test failure) does not give a code away."""

    handle: CallHandle
    digit: str = field(repr=False)
    method: DtmfMethod
    at: float = field(default_factory=_now, compare=False)


@dataclass(frozen=True)
class PlaybackFinished:
    """A non-looping :meth:`SipEngine.play` reached the end of its WAV file."""

    handle: CallHandle
    at: float = field(default_factory=_now, compare=False)


class LocalPromptEnd(Enum):
    """How a prompt played on the panel's own speaker through pjsua2's conference ended."""

    FINISHED = "finished"  # its WAV reached the end
    STOPPED = "stopped"  # stopped before the end (a cancelled play_local, the engine stopping)


@dataclass(frozen=True)
class LocalPromptEnded:
    """What :meth:`SipEngine.play_local` returns: the prompt ended (``end``) after ``seconds`` on the card.
    Not a :data:`SipEvent`: it answers the caller awaiting that prompt, not the event stream."""

    end: LocalPromptEnd
    seconds: float
    at: float = field(default_factory=_now, compare=False)


SipEvent = (
    RegistrationChanged
    | CallRinging
    | CallAnswered
    | MediaActive
    | CallEnded
    | IncomingCall
    | DtmfReceived
    | PlaybackFinished
)


@dataclass(frozen=True)
class StreamStats:
    """A call's audio stream as pjmedia counts it (``Call.getStreamStat``): its receive jitter buffer, in frames,
    and RTP as received (RTCP's receive side). What the talk benchmark reports beside its own frame count."""

    rx_packets: int
    rx_lost: int  # sequence numbers never received
    rx_discarded: int  # packets received too late or out of the buffer's range
    jbuf_frame_bytes: int  # pjmedia's JbufState.frameSize
    jbuf_lost: int  # frames the jitter buffer had to conceal (the packet never came)
    jbuf_discarded: int  # frames it dropped to shrink its delay
    jbuf_empty: int  # GETs while it was empty (the sound device asked and nothing was there)
    jbuf_avg_delay_ms: int
    jbuf_max_delay_ms: int
    jbuf_prefetch: int  # its current prefetch level (frames)
    # How the stream runs (Call.getStreamInfo): the jitter buffer's discard algorithm (pjmedia_jb_discard_algo;
    # None on a build that exports it as an opaque pointer) and whether its VAD suppresses silence.
    jbuf_discard_algo: int | None = None
    vad: bool | None = None
    tx_packets: int = 0  # RTP packets sent (RTCP's transmit side): with the VAD on, none while the microphone is quiet
