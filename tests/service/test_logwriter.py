"""The write-behind log handler: INFO a moment later on its own thread, warnings at once, the order always kept."""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from daemon.logwriter import LazyText, WriteBehindHandler
from daemon.service import setup_logging


class ThreadRecorder(logging.Handler):
    """A target that remembers each message and the thread that wrote it."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str]] = []
        self.written = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.getMessage(), threading.current_thread().name))
        self.written.set()


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("tests.logwriter")
    yield log
    for h in log.handlers[:]:
        log.removeHandler(h)
        h.close()
    log.propagate = True


def attach(logger: logging.Logger, handler: logging.Handler) -> logging.Handler:
    """The handler alone on the test's logger. Set in the test's body: pytest's capture handlers (which format every
    record they see) are attached around each phase, and a fixture's ``propagate = False`` did not hold."""
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return handler


def test_info_is_written_later_by_the_writer_thread_not_by_the_caller(logger: logging.Logger) -> None:
    target = ThreadRecorder()
    attach(logger, WriteBehindHandler(target, delay=0.05))
    built: list[str] = []

    def render() -> str:
        built.append(threading.current_thread().name)
        return "BUTTON_PRESSED | {}"

    started = time.monotonic()
    logger.info("%s", LazyText(render))
    assert (target.lines, built) == ([], [])  # nothing formatted or written on the path that logged
    assert target.written.wait(2)
    assert time.monotonic() - started >= 0.05
    assert target.lines == [("BUTTON_PRESSED | {}", "log-writer")]
    assert built == ["log-writer"]


def test_a_warning_is_written_at_once_after_the_lines_waiting_before_it(logger: logging.Logger) -> None:
    target = ThreadRecorder()
    attach(logger, WriteBehindHandler(target, delay=10.0))  # INFO would wait 10 s: the warning must not
    logger.info("press %s", "101")
    logger.debug("dialing")
    logger.warning("relay %s", "stuck")
    me = threading.current_thread().name
    assert target.lines == [("press 101", me), ("dialing", me), ("relay stuck", me)]


def test_a_traceback_is_never_held_back(logger: logging.Logger) -> None:
    target = ThreadRecorder()
    attach(logger, WriteBehindHandler(target, delay=10.0))
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.info("went wrong", exc_info=True)  # its frames (pjsua2 objects among them) must not be kept
    assert [m for m, _ in target.lines] == ["went wrong"]


def test_a_mutable_argument_is_rendered_when_logged(logger: logging.Logger) -> None:
    target = ThreadRecorder()
    handler = WriteBehindHandler(target, delay=10.0)
    attach(logger, handler)
    legs = ["sip:101@pbx"]
    logger.info("dialing %s", legs)
    legs.append("sip:102@pbx")  # the line says what was true when it was logged
    handler.flush()
    assert [m for m, _ in target.lines] == ["dialing ['sip:101@pbx']"]


def test_close_writes_everything_waiting(logger: logging.Logger) -> None:
    target = ThreadRecorder()
    handler = WriteBehindHandler(target, delay=10.0)
    attach(logger, handler)
    for i in range(3):
        logger.info("line %d", i)
    logger.removeHandler(handler)
    handler.close()
    assert [m for m, _ in target.lines] == ["line 0", "line 1", "line 2"]


def test_setup_logging_writes_info_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    try:
        handler = setup_logging("INFO", environ={}, stream=out, write_behind=10.0)
        logging.getLogger("daemon.flow").info("door opened")
        assert out.getvalue() == ""
        logging.getLogger("daemon.flow").error("relay fault")
        first, second = out.getvalue().splitlines()
        assert first.endswith("daemon.flow: door opened") and second.endswith("daemon.flow: relay fault")
        assert handler.target.formatter is not None
    finally:
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)
                h.close()
        root.setLevel(level)
