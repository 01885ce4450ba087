"""The panel's SIP engine: one owner thread runs pjsua2; the loop talks to it with async methods.

Only :mod:`daemon.sip._pj_owner` and :mod:`daemon.sip._pj_calls` load the pjsua2 binding, and only once an engine
starts, so importing this package is cheap and works where pjsua2 is not installed.
"""

from daemon.sip.audio_bridge import AudioBridge
from daemon.sip.engine import SipEngine
from daemon.sip.types import (
    CallAnswered,
    CallEnded,
    CallHandle,
    CallRinging,
    CallSnapshot,
    CallState,
    DtmfReceived,
    IncomingCall,
    MediaActive,
    PlaybackFinished,
    RegistrationChanged,
    RegistrationSnapshot,
    SipEvent,
)

__all__ = [
    "AudioBridge",
    "CallAnswered",
    "CallEnded",
    "CallHandle",
    "CallRinging",
    "CallSnapshot",
    "CallState",
    "DtmfReceived",
    "IncomingCall",
    "MediaActive",
    "PlaybackFinished",
    "RegistrationChanged",
    "RegistrationSnapshot",
    "SipEngine",
    "SipEvent",
]
