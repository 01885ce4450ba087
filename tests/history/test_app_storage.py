"""The app with its history database locked by another process: the queued visit starts at once, SIGTERM's
path stays inside the unit's 5 s, and every visit is in the database at the next start (issue 12, item 10)."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from daemon.history import History
from tests.history._support import locked
from tests.reliability._support import apartment, config_with, with_registrar
from tests.scenario.conftest import run_panel
from tests.support.alsa import AlsaCapture
from tests.support.peers import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.peers]


async def test_a_locked_history_delays_neither_the_queued_visit_nor_shutdown(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    dead = free_port()  # no registrar: each visit is a short "out of service"
    apartments = [
        apartment("101", f"sip:101@127.0.0.1:{dead}", buttons=("101",)),
        apartment("concierge", f"sip:c@127.0.0.1:{dead}", buttons=("concierge",)),
    ]
    config = with_registrar(config_with(tmp_path, prompt_cache, apartments), f"sip:127.0.0.1:{dead}")
    state = Path(config.paths.state_dir)
    async with History.in_state_dir(state):
        pass  # the database exists; another process now takes its lock for the whole run
    with locked(state / "history.sqlite3"):
        async with run_panel(config) as panel:
            await panel.press(17)
            await panel.press(18)  # another apartment while the first visit runs: queued
            await panel.visit_done(2)
            events = panel.events()
            stopping = time.monotonic()
        shutdown = time.monotonic() - stopping
    first, second = sorted({e["visit"] for e in events if e["event"] == "OUTCOME"})
    ended = next(
        datetime.fromisoformat(e["timestamp"]) for e in events if e["visit"] == first and e["event"] == "OUTCOME"
    )
    began = min(
        datetime.fromisoformat(e["timestamp"])
        for e in events
        if e["visit"] == second and e["event"] not in ("BUTTON_PRESSED", "PRESS_QUEUED")
    )
    gap = (began - ended).total_seconds()
    print(f"queued visit started {gap * 1000:.0f} ms after the first ended; shutdown took {shutdown:.2f} s")
    assert gap < 0.5  # was ~5 s: the finished visit's history write waited out SQLite's busy timeout
    assert shutdown < 3.0  # was 8.6 s under SIGTERM
    async with History.in_state_dir(state) as history:
        stored = {r.visit for r in await history.recent(10)}
    assert stored == {first, second}
