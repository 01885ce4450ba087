"""Signals are received by the loop: SIGHUP reloads, SIGTERM/SIGINT terminate."""

from __future__ import annotations

import logging
import os
import signal

import anyio
import pytest

from daemon.service import handle_signals


class Recorder:
    def __init__(self, *, fail_reload: bool = False) -> None:
        self.reloads = 0
        self.terminated = anyio.Event()
        self.reloaded = anyio.Event()
        self.fail_reload = fail_reload

    def terminate(self) -> None:
        self.terminated.set()

    async def reload(self) -> None:
        self.reloads += 1
        self.reloaded.set()
        if self.fail_reload:
            raise ValueError("bad config")


async def test_sighup_reloads_and_sigterm_terminates() -> None:
    rec = Recorder()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(
                lambda task_status: handle_signals(terminate=rec.terminate, reload=rec.reload, task_status=task_status)
            )
            os.kill(os.getpid(), signal.SIGHUP)
            await rec.reloaded.wait()
            assert rec.reloads == 1
            assert not rec.terminated.is_set()
            os.kill(os.getpid(), signal.SIGTERM)
            await rec.terminated.wait()
        # handle_signals returned on its own after SIGTERM: the task group closed without a cancel


async def test_a_failing_reload_is_logged_and_the_daemon_keeps_going(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder(fail_reload=True)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(
                lambda task_status: handle_signals(terminate=rec.terminate, reload=rec.reload, task_status=task_status)
            )
            os.kill(os.getpid(), signal.SIGHUP)
            await rec.reloaded.wait()
            await anyio.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)
            await rec.terminated.wait()
    assert "reload failed" in caplog.text
    assert any(r.levelno == logging.ERROR for r in caplog.records)
