"""Access PINs typed at the keypad: ``[access]`` (the panel's salt and brute-force limits) and ``[[pins]]``.

A PIN is stored only as its scrypt hash (``intercomd hash-pin`` prints the line to paste); the clear PIN is never
in the configuration, and problems here never quote a hash. Windows are plain strings (``days``, ``hours``,
dates) checked up front and turned into :class:`daemon.access.PinWindow` values.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import date, time
from typing import Annotated, Literal

from daemon.access import AccessPin, PinPolicy, PinWindow, is_pin_hash
from hw.settings import Range, range_problems

__all__ = ["DAY_NAMES", "AccessConfig", "PinConfig", "WindowConfig", "salt_problems"]

DayName = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAY_NAMES: tuple[DayName, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def salt_problems(salt: str) -> list[str]:
    try:
        raw = base64.b64decode(salt, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) < 16:
        return ["salt: must be at least 16 random bytes in base64 (`intercomd hash-pin` prints a new one)"]
    return []


@dataclass(frozen=True)
class AccessConfig:
    """``[access]``: the panel-wide guard against PINs guessed at the keypad (see docs/reliability.md)."""

    salt: str = ""  # base64; required with [[pins]]; not a secret, but it must differ from panel to panel
    wrong_limit: Annotated[int, Range(1, 20, "PINs")] = 5  # wrong PINs in a row before a lockout
    lockout_seconds: Annotated[float, Range(1, 86_400, "seconds")] = 60.0  # the first; each next one doubles
    max_lockout_seconds: Annotated[float, Range(1, 604_800, "seconds")] = 3600.0
    alarm_after: Annotated[int, Range(1, 1000, "PINs")] = 10  # wrong PINs since the last good one: PIN_ALARM

    def problems(self) -> list[str]:
        out = range_problems(self)
        if self.salt:
            out += salt_problems(self.salt)
        if self.max_lockout_seconds < self.lockout_seconds:
            out.append("max_lockout_seconds: must be at least lockout_seconds")
        return out

    @property
    def policy(self) -> PinPolicy:
        return PinPolicy(self.wrong_limit, self.lockout_seconds, self.max_lockout_seconds, self.alarm_after)


def _clock(text: str) -> time | None:
    try:
        hours, minutes = text.split(":")
        return time(int(hours), int(minutes)) if len(minutes) == 2 else None
    except ValueError:
        return None


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class WindowConfig:
    """When a PIN opens: ``days`` (mon..sun), ``hours`` ("08:00-17:00", end exclusive; "": all day), and the
    dates it is valid from/until (inclusive, "YYYY-MM-DD"; "": no limit). Local time."""

    days: tuple[DayName, ...] = DAY_NAMES
    hours: str = ""
    valid_from: str = ""
    valid_until: str = ""

    def problems(self) -> list[str]:
        out: list[str] = []
        if not self.days:
            out.append("days: at least one day")
        if self.hours:
            start, _, end = self.hours.partition("-")
            first, last = _clock(start), _clock(end)
            if first is None or last is None or last <= first:
                out.append(f"hours: {self.hours!r} is not 'HH:MM-HH:MM' with the end after the start")
        for key in ("valid_from", "valid_until"):
            value: str = getattr(self, key)
            if value and _day(value) is None:
                out.append(f"{key}: {value!r} is not a date YYYY-MM-DD")
        since, until = _day(self.valid_from), _day(self.valid_until)
        if since is not None and until is not None and until < since:
            out.append("valid_until: before valid_from")
        return out

    @property
    def window(self) -> PinWindow:
        start, end = time(0, 0), None
        if self.hours:
            first, _, last = self.hours.partition("-")
            start, end = _clock(first) or start, _clock(last)
        return PinWindow(
            weekdays=frozenset(DAY_NAMES.index(day) for day in self.days),
            start=start,
            end=end,
            valid_from=_day(self.valid_from),
            valid_until=_day(self.valid_until),
        )


@dataclass(frozen=True)
class PinConfig:
    """``[[pins]]``: who (``label``: logged and stored instead of the PIN), the hash, the doors it opens (empty:
    the first door) and when (any of ``windows``; none: always)."""

    label: str
    pin_hash: str
    doors: tuple[str, ...] = ()
    windows: tuple[WindowConfig, ...] = ()

    def problems(self) -> list[str]:
        out: list[str] = []
        if not self.label.strip():
            out.append("label: must not be empty (it names who opened, in the log and history)")
        if not is_pin_hash(self.pin_hash):
            out.append("pin_hash: not a PIN hash; paste the line `intercomd hash-pin` prints (never the PIN)")
        return out

    def access_pin(self, first_door: str) -> AccessPin:
        windows = tuple(w.window for w in self.windows) or (PinWindow(),)
        return AccessPin(self.label, self.pin_hash, self.doors or (first_door,), windows)
