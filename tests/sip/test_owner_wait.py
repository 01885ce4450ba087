"""The owner's wait rule (daemon/sip/_owner_wait.py), pure."""

from __future__ import annotations

from daemon.sip._owner_wait import IDLE_WAIT_MS, POLL_MS, owner_wait_ms


def test_idle_waits_long_and_a_call_polls() -> None:
    assert owner_wait_ms(100.0, commands_waiting=False, busy=False, deadlines=[None]) == IDLE_WAIT_MS
    assert IDLE_WAIT_MS >= 1000 > POLL_MS  # at most about one idle wake-up a second (issue 18: <= 5/s)
    assert owner_wait_ms(100.0, commands_waiting=False, busy=True, deadlines=[100.5]) == POLL_MS


def test_a_queued_command_does_not_wait() -> None:
    assert owner_wait_ms(100.0, commands_waiting=True, busy=False, deadlines=[]) == 0


def test_our_next_deadline_ends_the_wait() -> None:
    assert owner_wait_ms(100.0, commands_waiting=False, busy=False, deadlines=[None, 100.25, 103.0]) == 250
    assert owner_wait_ms(100.0, commands_waiting=False, busy=False, deadlines=[99.0]) == 0  # overdue
    assert owner_wait_ms(100.0, commands_waiting=False, busy=False, deadlines=[160.0]) == IDLE_WAIT_MS
