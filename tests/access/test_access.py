"""Access PINs: hashing, validity windows, the brute-force guard and its daily rate."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest

from daemon.access import (
    AccessPin,
    PinBook,
    PinGuard,
    PinPolicy,
    PinWindow,
    attempts_per_day,
    hash_pin,
    is_pin_hash,
    new_panel_salt,
)

SALT = "c2FsdHNhbHRzYWx0c2FsdA=="  # fixed in tests so hashes are stable


def test_hash_is_salted_slow_and_never_contains_the_pin() -> None:
    h = hash_pin("482193", SALT)
    assert is_pin_hash(h)
    assert "482193" not in h
    assert hash_pin("482193", SALT) == h  # deterministic per panel: found by lookup
    assert hash_pin("482193", new_panel_salt()) != h  # another panel's salt gives another hash


@pytest.mark.parametrize("bad", ["", "123", "12a4", "\uff11\uff12\uff13\uff14", "1234567890123", " 1234"])
def test_only_digit_pins_of_sensible_length_are_hashed(bad: str) -> None:
    with pytest.raises(ValueError, match="digits"):
        hash_pin(bad, SALT)


def test_book_finds_the_owner_and_refuses_two_equal_pins() -> None:
    cleaner = AccessPin("cleaner", hash_pin("2468", SALT), ("social",))
    maria = AccessPin("apt 101 - Maria", hash_pin("97531", SALT), ("social", "garage"))
    book = PinBook(SALT, (cleaner, maria))
    assert book.lookup("97531") is maria
    assert book.lookup("2468") is cleaner
    assert book.lookup("1357") is None
    assert book.lookup("not a pin") is None
    with pytest.raises(ValueError, match="the same"):
        PinBook(SALT, (cleaner, AccessPin("other", hash_pin("2468", SALT), ("social",))))


def test_window_weekdays_hours_and_dates() -> None:
    weekdays_8_17 = PinWindow(frozenset(range(5)), time(8), time(17), valid_until=date(2026, 12, 31))
    assert weekdays_8_17.allows(datetime(2026, 11, 26, 8, 0))  # a Thursday, at opening
    assert not weekdays_8_17.allows(datetime(2026, 11, 26, 17, 0))  # end is exclusive
    assert not weekdays_8_17.allows(datetime(2026, 11, 26, 7, 59))
    assert not weekdays_8_17.allows(datetime(2026, 11, 28, 10, 0))  # Saturday
    assert not weekdays_8_17.allows(datetime(2027, 1, 4, 10, 0))  # past valid_until
    pin = AccessPin("cleaner", hash_pin("2468", SALT), ("social",), (weekdays_8_17, PinWindow(frozenset({5}))))
    assert pin.valid_at(datetime(2026, 11, 28, 10, 0))  # the second window: Saturdays all day


def test_guard_locks_with_growing_back_off_and_raises_the_alarm_once() -> None:
    policy = PinPolicy(wrong_limit=3, lockout_seconds=10, max_lockout_seconds=35, alarm_after=7)
    guard, now, lockouts, alarms = PinGuard(), 0.0, [], 0
    for _ in range(12):
        assert not guard.locked(now)
        guard, locked, alarm = guard.after_wrong(now, policy)
        alarms += alarm
        if locked:
            lockouts.append(guard.locked_until - now)
            assert guard.locked(now) and guard.locked(guard.locked_until - 0.001)
            now = guard.locked_until
        now += 1
    assert lockouts == [10, 20, 35, 35]  # doubling, capped
    assert alarms == 1
    assert guard.after_good() == PinGuard()


def test_attempts_per_day_at_the_defaults() -> None:
    policy = PinPolicy()
    per_day = attempts_per_day(policy)
    # 5 tries, then 60 s, 120 s, ... capped at 1 h: about 5 tries an hour once the cap is reached.
    assert 100 <= per_day <= 160
    assert per_day / 10_000 < 0.02 and per_day / 1_000_000 < 0.0002  # share of a 4- and a 6-digit space a day
    assert attempts_per_day(PinPolicy(wrong_limit=1000, lockout_seconds=1, max_lockout_seconds=1)) > 28_000  # no guard


def test_the_brute_force_figures_in_the_reliability_report_are_the_computed_ones() -> None:
    from pathlib import Path

    from daemon.config import AccessConfig

    per_day = attempts_per_day(AccessConfig().policy)
    report = (Path(__file__).parents[2] / "docs" / "reliability.md").read_text()
    assert f"| 4-digit PINs (10,000) | {per_day} | {per_day / 100:.2f} % |" in report
    assert f"| 6-digit PINs (1,000,000) | {per_day} | {per_day / 10_000:.4f} % |" in report
