"""The pure edge filters, with plain numbers, and the dispatcher thread's ordering and precision."""

from __future__ import annotations

import statistics
import threading
import time

from hw._timing import Dispatcher, PressFilter, SettleFilter


def test_press_counts_only_after_min_press_and_reports_the_edge_time() -> None:
    f = PressFilter(min_press=0.05, holdoff=1.0)
    gen, deadline = f.edge(True, 10.0) or (0, 0.0)
    assert deadline == 10.05
    assert f.check(gen, 10.049) is None  # too early
    assert f.check(gen, 10.05) == 10.0


def test_release_before_min_press_is_noise() -> None:
    f = PressFilter(0.05, 1.0)
    gen, _ = f.edge(True, 1.0) or (0, 0.0)
    f.edge(False, 1.02)
    assert f.check(gen, 1.05) is None


def test_press_released_before_a_late_check_still_counts() -> None:
    f = PressFilter(0.05, 1.0)
    gen, _ = f.edge(True, 1.0) or (0, 0.0)
    due = f.edge(False, 1.08)  # held 80 ms; the check due at 1.05 has not run yet
    assert f.check(gen, 1.09) == 1.0  # the stale check still delivers it, once
    assert due is not None and f.check(*due) is None
    assert f.edge(True, 1.5) is None  # and the hold-off runs from that press


def test_storm_yields_one_press_per_holdoff() -> None:
    f = PressFilter(0.0, 1.0)
    presses = []
    t = 0.0
    for _ in range(200):  # 200 ms of edges every 1 ms, then again after the hold-off
        for active in (True, False):
            due = f.edge(active, t)
            if due and (at := f.check(due[0], due[1])) is not None:
                presses.append(at)
            t += 0.0005
    assert presses == [0.0]
    due = f.edge(True, 1.2)
    assert due is not None and f.check(due[0], due[1]) == 1.2


def test_settle_filter_reports_stable_changes_only() -> None:
    f = SettleFilter(0.02, initial=False)
    assert f.edge(False, 0.0) is None  # no change
    gen, _ = f.edge(True, 1.0) or (0, 0.0)
    f.edge(False, 1.005)  # bounce back
    assert f.check(gen, 1.02) is None and f.state is False
    gen, _ = f.edge(True, 1.01) or (0, 0.0)
    assert f.check(gen, 1.03) == (True, 1.01) and f.state is True


def test_dispatcher_runs_in_deadline_order_and_on_time() -> None:
    d = Dispatcher()
    done = threading.Event()
    order: list[int] = []
    late: list[float] = []
    try:
        now = time.monotonic()
        for i, delay in enumerate((0.03, 0.01, 0.02)):
            when = now + delay

            def fire(i: int = i, when: float = when) -> None:
                order.append(i)
                late.append(time.monotonic() - when)

            d.call_at(when, fire)
        cancelled = d.call_at(now + 0.015, lambda: order.append(99))
        cancelled.cancel()
        d.call_at(now + 0.04, done.set)
        assert done.wait(2)
    finally:
        d.close()
    assert order == [1, 2, 0]
    assert all(0 <= x < 0.01 for x in late), late


def test_dispatcher_survives_a_failing_callback() -> None:
    d = Dispatcher()
    ok = threading.Event()
    try:

        def boom() -> None:
            raise ZeroDivisionError

        d.call_soon(boom)
        d.call_soon(ok.set)
        assert ok.wait(2)
    finally:
        d.close()


def test_dispatcher_precision_over_many_deadlines() -> None:
    d = Dispatcher()
    lateness: list[float] = []
    done = threading.Event()
    try:
        start = time.monotonic()
        for i in range(100):
            when = start + 0.002 * i

            def fire(when: float = when) -> None:
                lateness.append(time.monotonic() - when)

            d.call_at(when, fire)
        d.call_at(start + 0.25, done.set)
        assert done.wait(2)
    finally:
        d.close()
    assert statistics.median(lateness) < 0.005, statistics.median(lateness)
