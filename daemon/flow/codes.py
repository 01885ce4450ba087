"""Door-code checking with lockout, as pure functions over a frozen state.

Digits are collected until ``#``, until they equal one of the called apartment's codes, or until they
reach the longest code's length. A wrong code is only declared at ``#`` or at full length, never at the
first wrong digit: answering digit by digit would let a brute force find a code one digit at a time.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass, replace

__all__ = ["CodeGuard", "Verdict", "enter_digit"]


class Verdict(enum.Enum):
    PENDING = "pending"  # need more digits
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    LOCKED = "locked"  # codes are locked out; the digit was ignored
    LOCKOUT_STARTED = "lockout_started"  # this wrong code started a lockout


@dataclass(frozen=True)
class CodeGuard:
    """Per-apartment lockout state; it outlives a visit so a new call does not reset the count."""

    wrong_in_a_row: int = 0
    locked_until: float = 0.0
    buffer: str = ""

    def locked(self, now: float) -> bool:
        return now < self.locked_until


def _matches(entered: str, codes: tuple[str, ...]) -> bool:
    # compare_digest on every code: the time taken must not say which code was close.
    return any(hmac.compare_digest(entered.encode(), code.encode()) for code in codes)


def enter_digit(
    guard: CodeGuard, digit: str, codes: tuple[str, ...], *, now: float, limit: int, lockout_seconds: float
) -> tuple[CodeGuard, Verdict]:
    """Feed one DTMF digit. ``*`` clears what was entered so far."""
    if guard.locked(now):
        return replace(guard, buffer=""), Verdict.LOCKED
    if not codes:
        return _wrong(guard, now, limit, lockout_seconds)
    if digit == "*":
        return replace(guard, buffer=""), Verdict.PENDING
    if digit == "#":
        if not guard.buffer:
            return guard, Verdict.PENDING
        if _matches(guard.buffer, codes):
            return CodeGuard(), Verdict.ACCEPTED
        return _wrong(guard, now, limit, lockout_seconds)
    entered = guard.buffer + digit
    if _matches(entered, codes):
        return CodeGuard(), Verdict.ACCEPTED
    if len(entered) >= max(len(c) for c in codes):
        return _wrong(guard, now, limit, lockout_seconds)
    return replace(guard, buffer=entered), Verdict.PENDING


def _wrong(guard: CodeGuard, now: float, limit: int, lockout_seconds: float) -> tuple[CodeGuard, Verdict]:
    wrong = guard.wrong_in_a_row + 1
    if wrong >= limit:
        return CodeGuard(wrong_in_a_row=0, locked_until=now + lockout_seconds), Verdict.LOCKOUT_STARTED
    return CodeGuard(wrong_in_a_row=wrong), Verdict.REJECTED
