"""What storage may say about keys typed on a phone: that a key was typed, never which.

The rule is structural, not a search for secrets in text: an event that carries typed keys (``KEYPAD_EVENTS``)
has its text reduced to the DTMF method and ``*`` and only its known structural fields kept; a field whose
name says it holds a code or a key is written as ``*`` in any event or record. Nothing else is touched, so a
resident URI that happens to contain a code's digits is written as it is, and nothing derived from a code
(its length, a prefix, which code matched) can be read off the mask: every run of keys is one ``*``.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "DTMF_METHOD_LABELS",
    "KEYPAD_EVENTS",
    "MASK",
    "is_secret_key",
    "redact_field",
    "redact_keypad_text",
]

MASK: Final = "*"

# Events whose text may hold typed keys.
KEYPAD_EVENTS: Final = frozenset({"DTMF", "DTMF_IGNORED", "CODE_ACCEPTED", "CODE_REJECTED"})

# The DTMF methods (daemon.sip.types.DtmfMethod) by a name with no digit in it, so that no digit at all appears
# in a keypad event ("rfc2833" would put "2833" next to the mask; telephone-event is the RTP payload's name).
DTMF_METHOD_LABELS: Final = {"rfc2833": "telephone-event", "info": "sip-info"}

# Fields a keypad event may carry as they are: where the key came from, never what it was.
_KEYPAD_SAFE_FIELDS: Final = frozenset({"leg", "method", "attempts", "wrong_codes", "lockout_seconds"})

# A field named with one of these words holds (or is derived from) a secret.
_SECRET_WORDS: Final = frozenset(
    {"code", "codes", "digit", "digits", "dtmf", "key", "keys", "pin", "password", "passwd", "secret", "typed"}
)
# Counts and settings that name a secret without holding one.
_NOT_SECRET: Final = frozenset({"wrong_codes", "wrong_code_limit", "dtmf_method"})
_WORD = re.compile(r"[a-z]+")
_KEYS = re.compile(r"[0-9A-D*#]+")  # the sixteen DTMF keys, a run of them at a time


def is_secret_key(name: str) -> bool:
    """True for field names such as ``code``, ``digits``, ``matched_code``, ``sip_password``."""
    if name.lower() in _NOT_SECRET:
        return False
    return any(word in _SECRET_WORDS for word in _WORD.findall(name.lower()))


def redact_keypad_text(text: str) -> str:
    """A keypad event's text: the DTMF method (by its label) and ``*`` for every run of keys."""
    if text in DTMF_METHOD_LABELS:
        return DTMF_METHOD_LABELS[text]
    method, sep, rest = text.partition(": ")
    if sep and method in DTMF_METHOD_LABELS:
        return f"{DTMF_METHOD_LABELS[method]}: {_KEYS.sub(MASK, rest)}"
    return _KEYS.sub(MASK, text)


def redact_field(name: str, value: object, *, keypad: bool) -> object:
    """A field as it may be written: secret-named ones as ``*``; in keypad events, only known fields as they are."""
    if is_secret_key(name):
        return MASK
    if not keypad:
        return value
    if name not in _KEYPAD_SAFE_FIELDS:
        return MASK
    return redact_keypad_text(value) if isinstance(value, str) else value
