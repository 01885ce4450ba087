"""The panel's SIP engine: one owner thread runs pjsua2; the loop talks to it with async methods.

Only the owner thread's modules, ``daemon.sip._pj_*`` (the owner, split by concern: setup, calls, media,
inbound), load the pjsua2 binding; every line of them runs on that one thread. The engine imports them only
once it starts, so importing this package is cheap and works where pjsua2 is not installed
(``tests/sip/test_pjsua2_confined.py`` keeps it so).
"""

from daemon.sip._pjsua_info import PjsuaInfo
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
    RegistrationFailure,
    RegistrationSnapshot,
    SipEvent,
    StreamStats,
)

__all__ = [
    "CallAnswered",
    "CallEnded",
    "CallHandle",
    "CallRinging",
    "CallSnapshot",
    "CallState",
    "DtmfReceived",
    "IncomingCall",
    "MediaActive",
    "PjsuaInfo",
    "PlaybackFinished",
    "RegistrationChanged",
    "RegistrationFailure",
    "RegistrationSnapshot",
    "SipEngine",
    "SipEvent",
    "StreamStats",
]
