"""The keypad on gpiozero's mock pins: a matrix whose keys join rows to columns, and one button per key."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

from gpiozero.pins.mock import MockFactory

from hw._timing import Dispatcher, Handle
from hw.keypad import LAYOUT_3X4, ButtonKeypad, KeyPressed, KeyStuck, MatrixKeypad, MatrixKeypadConfig
from hw.panel import Panel
from hw.settings import KeypadConfig, PanelConfig
from tests.hw.helpers import Recorder, hold
from tests.hw.test_panel import CONFIG as PANEL
from tests.support.keypad_matrix import MockMatrix

ROWS, COLUMNS = (5, 6, 13, 19), (12, 16, 20)
CONFIG = MatrixKeypadConfig(ROWS, COLUMNS, LAYOUT_3X4, settle_ms=10, stuck_seconds=0.5)


def tap(matrix: MockMatrix, key: str, seconds: float = 0.05) -> None:
    matrix.press(key)
    time.sleep(seconds)
    matrix.release(key)
    time.sleep(0.03)


def keys(recorder: Recorder) -> str:
    return "".join(e.key for e in recorder.events if isinstance(e, KeyPressed))


def test_every_key_of_the_matrix_is_read_once_per_press(factory: MockFactory, recorder: Recorder) -> None:
    matrix = MockMatrix(factory, ROWS, COLUMNS, LAYOUT_3X4)
    keypad = MatrixKeypad(CONFIG, pin_factory=factory, post=recorder.post)
    try:
        for key in "123456789*0#":
            tap(matrix, key)
        recorder.wait_for(KeyPressed, 12)
        assert keys(recorder) == "123456789*0#"
        tap(matrix, "5", seconds=0.3)  # held: still one press
        recorder.wait_for(KeyPressed, 13)
        time.sleep(0.05)
        assert keys(recorder) == "123456789*0#5"
    finally:
        keypad.close()


def test_rest_state_drives_every_row_and_costs_no_scan(factory: MockFactory, recorder: Recorder) -> None:
    matrix = MockMatrix(factory, ROWS, COLUMNS, LAYOUT_3X4)
    keypad = MatrixKeypad(CONFIG, pin_factory=factory, post=recorder.post)
    try:
        assert all(not row.state for row in matrix.rows)  # all rows low: any key pulls its column low
        for row in matrix.rows:
            row.clear_states()
        time.sleep(0.1)
        assert all(len(row.states) == 1 for row in matrix.rows)  # nothing toggled while idle: no polling
    finally:
        keypad.close()


def test_ghost_keys_are_ignored(factory: MockFactory, recorder: Recorder) -> None:
    matrix = MockMatrix(factory, ROWS, COLUMNS, LAYOUT_3X4)
    keypad = MatrixKeypad(CONFIG, pin_factory=factory, post=recorder.post)
    try:
        for key in "124":  # a rectangle's three corners: '5' reads as pressed too
            matrix.press(key)
            time.sleep(0.03)
        time.sleep(0.05)
        first = keys(recorder)
        assert first == "1"  # the first key alone was real; the rest never reported
        for key in "124":
            matrix.release(key)
        time.sleep(0.05)
        tap(matrix, "9")
        recorder.wait_for(KeyPressed, 2)
        assert keys(recorder) == "19"
    finally:
        keypad.close()


def test_a_stuck_key_is_reported_once_and_ignored_until_released(factory: MockFactory, recorder: Recorder) -> None:
    matrix = MockMatrix(factory, ROWS, COLUMNS, LAYOUT_3X4)
    keypad = MatrixKeypad(CONFIG, pin_factory=factory, post=recorder.post)
    try:
        matrix.press("7")
        stuck = recorder.wait_for(KeyStuck, 1, timeout=2)
        assert [e.key for e in stuck if isinstance(e, KeyStuck)] == ["7"]
        tap(matrix, "3")  # another column: works while '7' is jammed
        recorder.wait_for(KeyPressed, 2)
        matrix.release("7")
        time.sleep(0.05)
        tap(matrix, "7")
        recorder.wait_for(KeyPressed, 3)
        assert keys(recorder) == "737"
        assert len(recorder.of(KeyStuck)) == 1
    finally:
        keypad.close()


def test_button_keypad_posts_keys(factory: MockFactory, recorder: Recorder) -> None:
    pins = {"1": 17, "2": 18, "#": 27}
    keypad = ButtonKeypad(pins, pin_factory=factory, post=recorder.post, min_press_ms=10, holdoff_ms=50)
    try:
        for key in "12#":
            hold(factory.pin(pins[key]), 0.03)
            time.sleep(0.02)
        recorder.wait_for(KeyPressed, 3)
        assert keys(recorder) == "12#"
    finally:
        keypad.close()


def test_layout_problems() -> None:
    assert MatrixKeypadConfig(ROWS, COLUMNS).problems() == []
    assert MatrixKeypadConfig(ROWS[:3], COLUMNS).problems()
    assert MatrixKeypadConfig(ROWS, (12, 16, 5)).problems()  # GPIO5 is a row too
    assert MatrixKeypadConfig(ROWS, COLUMNS, ("121", "456", "789", "*0#")).problems()


class LateDispatcher(Dispatcher):
    """A loaded machine: every deadline runs 150 ms late."""

    def call_at(self, when: float, fn: Callable[[], None]) -> Handle:
        return super().call_at(when + 0.15, fn)


def test_a_short_press_is_not_lost_when_the_settle_check_runs_late(factory: MockFactory, recorder: Recorder) -> None:
    matrix = MockMatrix(factory, ROWS, COLUMNS, LAYOUT_3X4)
    dispatcher = LateDispatcher("late")
    keypad = MatrixKeypad(CONFIG, pin_factory=factory, post=recorder.post, dispatcher=dispatcher)
    try:
        for key in "42":
            tap(matrix, key, seconds=0.05)  # released long before its settle check runs
            time.sleep(0.2)
        recorder.wait_for(KeyPressed, 2)
        assert keys(recorder) == "42"
    finally:
        keypad.close()
        dispatcher.close()


def test_the_panel_builds_its_keypad_and_keys_leave_through_its_outbox(factory: MockFactory) -> None:
    matrix = MockMatrix(factory, ROWS, (21, 25, 26), LAYOUT_3X4)
    keypad = KeypadConfig(rows=ROWS, columns=(21, 25, 26), settle_ms=10)
    config: PanelConfig = replace(PANEL, leds={}, keypad=keypad)  # the LEDs' GPIO5/6 are keypad rows here
    posted_on: list[str] = []
    recorder = Recorder()

    def sink(event: object) -> None:
        posted_on.append(threading.current_thread().name)
        recorder.post(event)  # type: ignore[arg-type]

    with Panel(config, pin_factory=factory, post=sink):
        tap(matrix, "7")
        tap(matrix, "#")
        recorder.wait_for(KeyPressed, 2)
    assert keys(recorder) == "7#"
    assert set(posted_on) == {"hw-outbox"}  # never the dispatcher or gpiozero's thread: the panel's outbox
    assert "key='?'" in repr(recorder.events[0])  # a key may be a PIN digit: not in tracebacks or debug logs


def test_a_keypad_of_one_button_per_key_is_built_from_keys(factory: MockFactory) -> None:

    recorder = Recorder()
    config = PanelConfig(keypad=KeypadConfig(keys={"1": 2, "C": 3}, min_press_ms=10, holdoff_ms=0))
    with Panel(config, pin_factory=factory, post=recorder.post):
        hold(factory.pin(3), 0.05)
        recorder.wait_for(KeyPressed, 1)
    assert keys(recorder) == "C"
