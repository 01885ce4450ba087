"""The refusal pace that keeps an INVITE flood from exhausting pjlib's 64-socket ioqueue (pure arithmetic)."""

from __future__ import annotations

import pytest

from daemon.config import MAX_CALLS_LIMIT
from daemon.sip._teardown_pace import IOQUEUE_KEYS, KEY_FREE_DELAY_S, TeardownPace, refusal_budget


def test_budget_leaves_the_ioqueue_room_for_live_and_ending_calls() -> None:
    for max_calls in range(1, MAX_CALLS_LIMIT + 1):
        budget = refusal_budget(max_calls)
        assert budget >= 1, max_calls  # the config's limit still leaves room to refuse
        # worst case: every slot live (2 sockets each), the budget spent, and every live call ending too
        assert 2 * max_calls + 2 * (budget + max_calls) <= IOQUEUE_KEYS
    assert refusal_budget(8) == 11  # the default config (13 before 4 sockets were kept for inbound TCP)
    assert refusal_budget(MAX_CALLS_LIMIT + 3) == 0


def test_room_shrinks_with_each_teardown_and_comes_back_after_the_window() -> None:
    pace = TeardownPace(3)
    assert pace.window > KEY_FREE_DELAY_S
    assert pace.room(10.0) == 3
    for t in (10.0, 10.1, 10.2):
        pace.note(t)
    assert pace.room(10.2) == 0
    assert pace.room(10.0 + pace.window + 0.01) == 1  # only the first one has left the window
    assert pace.room(10.2 + pace.window + 0.01) == 3


def test_a_burst_is_spread_to_the_budget_per_window() -> None:
    """600 refusals wanted at once, served every 20 ms turn: never more than the budget in any window."""
    pace = TeardownPace(refusal_budget(8))
    waiting, done, now = 600, [], 0.0
    while waiting:
        for _ in range(pace.room(now)):
            pace.note(now)
            done.append(now)
            waiting -= 1
            if not waiting:
                break
        now += 0.02
    for i, t in enumerate(done):
        in_window = [u for u in done[i:] if u < t + pace.window]
        assert len(in_window) <= pace.budget
    assert now < 600 / pace.budget * pace.window + 1  # and it does not stall


def test_a_budget_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        TeardownPace(0)
