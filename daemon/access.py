"""Access PINs typed at the keypad: hashed at rest, valid in windows, guarded against brute force.

Pure except for the hash itself (CPU-bound: callers run :func:`hash_pin` / :meth:`PinBook.lookup` in a worker
thread, never on the loop).

Why one salt per panel and not one per PIN: a PIN is typed without a name, so the panel must find it among
all of them. With a salt per PIN every attempt would cost one slow hash per stored PIN (hundreds of scrypt
runs per keypress on a Pi); with one random salt per panel an attempt costs one slow hash and a dictionary
lookup, precomputed tables do not carry from one panel to another, and two residents can never share a PIN
unnoticed (equal hashes are refused when the book is built). What protects a 4-6 digit PIN is the online
guard (:class:`PinGuard`), not the hash: 10^6 scrypt runs is hours, not years, for someone who stole the file.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from datetime import date, datetime, time

__all__ = [
    "AccessPin",
    "PinBook",
    "PinGuard",
    "PinPolicy",
    "PinVerdict",
    "PinWindow",
    "attempts_per_day",
    "hash_pin",
    "new_panel_salt",
]

# scrypt cost: 2^14 x 8 x 128 B = 16 MiB and ~40 ms here; a Pi Zero 2 W has the memory and takes ~0.3 s.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1
_PREFIX = "scrypt1$"
PIN_DIGITS = range(4, 13)


def new_panel_salt() -> str:
    """A random salt for one panel (kept beside the PINs; it is not a secret, it only must differ per panel)."""
    return base64.b64encode(secrets.token_bytes(16)).decode("ascii")


def hash_pin(pin: str, salt: str) -> str:
    """The stored form of ``pin``: ``scrypt1$<base64>``. Raises ValueError for anything that is not a PIN."""
    if not (pin.isascii() and pin.isdigit() and len(pin) in PIN_DIGITS):
        raise ValueError(f"a PIN is {PIN_DIGITS.start} to {PIN_DIGITS.stop - 1} digits")
    digest = hashlib.scrypt(
        pin.encode("ascii"), salt=base64.b64decode(salt), n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    return _PREFIX + base64.b64encode(digest).decode("ascii")


def is_pin_hash(text: str) -> bool:
    if not text.startswith(_PREFIX):
        return False
    try:
        return len(base64.b64decode(text.removeprefix(_PREFIX), validate=True)) == 32
    except ValueError:
        return False


@dataclass(frozen=True)
class PinWindow:
    """When a PIN is valid: weekdays (0 = Monday), a daily time range (end exclusive), and optional dates."""

    weekdays: frozenset[int] = frozenset(range(7))
    start: time = time(0, 0)
    end: time | None = None  # None: until midnight
    valid_from: date | None = None
    valid_until: date | None = None  # inclusive

    def allows(self, at: datetime) -> bool:
        day = at.date()
        if self.valid_from is not None and day < self.valid_from:
            return False
        if self.valid_until is not None and day > self.valid_until:
            return False
        if at.weekday() not in self.weekdays:
            return False
        now = at.time()
        return self.start <= now and (self.end is None or now < self.end)


@dataclass(frozen=True)
class AccessPin:
    label: str  # who: logged and stored instead of the PIN ("cleaner", "apt 101 - Maria")
    pin_hash: str
    doors: tuple[str, ...]
    windows: tuple[PinWindow, ...] = (PinWindow(),)  # valid if any window allows

    def valid_at(self, at: datetime) -> bool:
        return any(w.allows(at) for w in self.windows)


class PinBook:
    """Every PIN of the panel, found by its hash. Build once per configuration (reload builds a new one)."""

    def __init__(self, salt: str, pins: tuple[AccessPin, ...]) -> None:
        self.salt = salt
        self._by_hash: dict[str, AccessPin] = {}
        for pin in pins:
            if pin.pin_hash in self._by_hash:
                raise ValueError(f"PINs of {self._by_hash[pin.pin_hash].label!r} and {pin.label!r} are the same")
            self._by_hash[pin.pin_hash] = pin

    def __len__(self) -> int:
        return len(self._by_hash)

    def lookup(self, typed: str) -> AccessPin | None:
        """The PIN's owner, or None. Slow on purpose (one scrypt): call it from a worker thread."""
        try:
            candidate = hash_pin(typed, self.salt)
        except ValueError:
            return None
        found: AccessPin | None = None
        for stored, pin in self._by_hash.items():  # constant work whatever matches: no early exit
            if hmac.compare_digest(stored, candidate):
                found = pin
        return found


@dataclass(frozen=True)
class PinPolicy:
    """Brute-force limits for the whole panel (the keypad is on the street)."""

    wrong_limit: int = 5  # wrong PINs in a row before a lockout
    lockout_seconds: float = 60.0  # the first lockout; each further one doubles, up to the maximum
    max_lockout_seconds: float = 3600.0
    alarm_after: int = 10  # wrong PINs since the last good one that raise the alarm event


class PinVerdict(enum.StrEnum):
    """What one attempt at the keypad meant."""

    ACCEPTED = "accepted"
    OUTSIDE_WINDOW = "outside_window"
    REJECTED = "rejected"
    LOCKED = "locked"  # typed during a lockout: not even evaluated


@dataclass(frozen=True)
class PinGuard:
    """Lockout state for the panel's keypad; survives visits, reloads and restarts (daemon/lockouts.py saves it)."""

    wrong_in_a_row: int = 0
    wrong_since_good: int = 0
    lockouts: int = 0  # lockouts so far in this streak: each doubles the next one
    locked_until: float = 0.0

    def locked(self, now: float) -> bool:
        return now < self.locked_until

    def after_good(self) -> PinGuard:
        return PinGuard()

    def after_wrong(self, now: float, policy: PinPolicy) -> tuple[PinGuard, bool, bool]:
        """Returns (guard, lockout started, alarm now)."""
        wrong = self.wrong_in_a_row + 1
        since_good = self.wrong_since_good + 1
        alarm = since_good == policy.alarm_after
        if wrong < policy.wrong_limit:
            return replace(self, wrong_in_a_row=wrong, wrong_since_good=since_good), False, alarm
        seconds = min(policy.max_lockout_seconds, policy.lockout_seconds * 2**self.lockouts)
        guard = PinGuard(0, since_good, self.lockouts + 1, now + seconds)
        return guard, True, alarm


def attempts_per_day(policy: PinPolicy, seconds_per_attempt: float = 3.0) -> int:
    """How many PINs an attacker can try in 24 h at the keypad against ``policy`` (typing takes time too)."""
    day, t, tried, lockouts = 86400.0, 0.0, 0, 0
    while t < day:
        burst = min(policy.wrong_limit, int((day - t) / seconds_per_attempt))
        tried += burst
        t += burst * seconds_per_attempt
        if burst < policy.wrong_limit:
            break
        t += min(policy.max_lockout_seconds, policy.lockout_seconds * 2**lockouts)
        lockouts += 1
    return tried
