"""Door-code checking with lockout, as pure functions over frozen values.

Two things with two lifetimes, kept apart on purpose:

* :class:`Lockout` (wrong codes in a row, locked until when) belongs to an apartment and outlives its
  visits, so a brute force cannot reset the count by calling again. It holds no digit.
* The typed digits belong to ONE call: the machine keeps them in the visit's state for its answered leg
  and drops them when that call ends, so "47" typed on one call can never join "11" typed on the next.

Digits are collected until ``#``, until they equal one of the called apartment's codes, or until they
reach the longest code's length. A wrong code is only declared at ``#`` or at full length, never at the
first wrong digit: answering digit by digit would let a brute force find a code one digit at a time.

An entry thrown away without ``#`` (``*``, the digit timeout, the call's end) that is at least as long as
the shortest code was a whole guess at that code, and counts as a wrong one: otherwise, with codes of two
lengths, "0000*", "0001*", ... (or hanging up after each) tries every short code without ever locking out.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass

__all__ = ["Lockout", "Verdict", "abandon_typed", "enter_digit"]


class Verdict(enum.Enum):
    PENDING = "pending"  # need more digits
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    LOCKED = "locked"  # codes are locked out; the digit was ignored
    LOCKOUT_STARTED = "lockout_started"  # this wrong code started a lockout


@dataclass(frozen=True)
class Lockout:
    """Per-apartment brute-force state; it outlives a visit so a new call does not reset the count."""

    wrong_in_a_row: int = 0
    locked_until: float = 0.0

    def locked(self, now: float) -> bool:
        return now < self.locked_until


def _matches(entered: str, codes: tuple[str, ...]) -> bool:
    # compare_digest on every code: the time taken must not say which code was close.
    return any(hmac.compare_digest(entered.encode(), code.encode()) for code in codes)


def enter_digit(
    lockout: Lockout, typed: str, digit: str, codes: tuple[str, ...], *, now: float, limit: int, lockout_seconds: float
) -> tuple[Lockout, str, Verdict]:
    """Feed one DTMF ``digit`` after ``typed`` (this call's digits so far). ``*`` clears what was typed.

    Returns the apartment's new lockout, this call's new typed digits and the verdict."""
    if lockout.locked(now):
        return lockout, "", Verdict.LOCKED
    if not codes:
        return _wrong(lockout, now, limit, lockout_seconds)
    if digit == "*":
        if _whole_guess(typed, codes):
            return _wrong(lockout, now, limit, lockout_seconds)
        return lockout, "", Verdict.PENDING
    if digit == "#":
        if not typed:
            return lockout, "", Verdict.PENDING
        if _matches(typed, codes):
            return Lockout(), "", Verdict.ACCEPTED
        return _wrong(lockout, now, limit, lockout_seconds)
    entered = typed + digit
    if _matches(entered, codes):
        return Lockout(), "", Verdict.ACCEPTED
    if len(entered) >= max(len(c) for c in codes):
        return _wrong(lockout, now, limit, lockout_seconds)
    return lockout, entered, Verdict.PENDING


def abandon_typed(
    lockout: Lockout, typed: str, codes: tuple[str, ...], *, now: float, limit: int, lockout_seconds: float
) -> tuple[Lockout, Verdict | None]:
    """This call's ``typed`` digits are dropped unfinished (digit timeout, the call ended). A whole guess
    (as long as the shortest code) counts as a wrong code: the apartment's new lockout and the verdict
    (REJECTED or LOCKOUT_STARTED), or the lockout unchanged and None when nothing was guessed."""
    if lockout.locked(now) or not _whole_guess(typed, codes):
        return lockout, None
    lockout, _, verdict = _wrong(lockout, now, limit, lockout_seconds)
    return lockout, verdict


def _whole_guess(typed: str, codes: tuple[str, ...]) -> bool:
    return bool(typed) and bool(codes) and len(typed) >= min(len(c) for c in codes)


def _wrong(lockout: Lockout, now: float, limit: int, lockout_seconds: float) -> tuple[Lockout, str, Verdict]:
    wrong = lockout.wrong_in_a_row + 1
    if wrong >= limit:
        return Lockout(wrong_in_a_row=0, locked_until=now + lockout_seconds), "", Verdict.LOCKOUT_STARTED
    return Lockout(wrong_in_a_row=wrong), "", Verdict.REJECTED
