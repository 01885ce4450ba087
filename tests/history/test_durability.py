"""History that loses nothing: a visit is stored from its start and a killed daemon's visit becomes
"interrupted"; a locked database never holds the visit path or shutdown; damaged, deleted or replaced files are
noticed and replaced without losing a record."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from daemon.history import INTERRUPTED, INTERRUPTED_DETAIL, History, VisitRecord
from tests.history._support import locked

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def visit(n: int, **changes: object) -> VisitRecord:
    fields: dict[str, object] = {
        "visit": f"v{n:04d}",
        "apartment": "101",
        "button": "101",
        "started_at": T0 + timedelta(minutes=n),
        "outcome": "door_opened",
    }
    fields.update(changes)
    return VisitRecord(**fields)  # type: ignore[arg-type]


def files(directory: Path, pattern: str) -> list[Path]:
    return sorted(directory.glob(pattern))


def rows(path: Path) -> dict[str, tuple[str, int, str]]:
    if not path.exists():
        return {}
    with closing(sqlite3.connect(path)) as db:
        try:
            found = db.execute("SELECT visit, outcome, door_opened, failure FROM visits").fetchall()
        except sqlite3.OperationalError:  # not created yet
            return {}
    return {v: (outcome, opened, failure) for v, outcome, opened, failure in found}


# -- a visit is recorded from its start --


async def test_a_visit_left_in_progress_is_interrupted_at_the_next_start(tmp_path: Path) -> None:
    async with History(tmp_path / "h.db") as history:
        history.begin(visit(1))
        history.begin(visit(1, answered_by="sip:a@h", door_opened=True))  # updated while the visit runs
        history.begin(visit(2))
        await history.record(visit(2, outcome="no_answer"))
        assert await history.flush(5)
        assert rows(tmp_path / "h.db")["v0001"][:2] == ("in_progress", 1)
        # no record() for v0001: the daemon stops (or dies) mid-visit
    async with History(tmp_path / "h.db") as history:
        by_id = {r.visit: r for r in await history.recent(10)}
    assert by_id["v0001"].outcome == INTERRUPTED and by_id["v0001"].door_opened
    assert by_id["v0001"].failure == INTERRUPTED_DETAIL and by_id["v0001"].answered_by == "sip:a@h"
    assert by_id["v0002"].outcome == "no_answer"


async def test_a_late_begin_never_undoes_a_finished_visit(tmp_path: Path) -> None:
    async with History(tmp_path / "h.db") as history:
        await history.record(visit(1))
        history.begin(visit(1))  # queued after the end, in the same batch
        assert await history.flush(5)
        history.begin(visit(1))  # and in a later batch, against the stored row
        assert await history.flush(5)
    assert rows(tmp_path / "h.db")["v0001"][0] == "door_opened"


HOLDER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    import anyio
    from daemon.history import History, VisitRecord

    async def main() -> None:
        history = History(sys.argv[1])
        await history.open()
        started = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
        history.begin(VisitRecord("killed", "101", "101", started, "", answered_by="sip:a@h", door_opened=True))
        print("begun", flush=True)  # no flush(): the writer thread writes a begin by itself, at once
        await anyio.sleep(60)  # SIGKILLed here, the door open and the visit not finished

    anyio.run(main)
    """
)


def start_holder(path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True, env=env)


async def test_sigkill_after_the_door_opened_leaves_an_interrupted_row(tmp_path: Path) -> None:
    proc = start_holder(tmp_path / "history.sqlite3")
    try:
        assert proc.stdout is not None
        with anyio.fail_after(20):
            line = await anyio.to_thread.run_sync(proc.stdout.readline)
        assert line == "begun\n"
        with anyio.fail_after(5):  # the row appears without anyone asking for it (no event to wait on: poll)
            while "killed" not in rows(tmp_path / "history.sqlite3"):
                await anyio.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert rows(tmp_path / "history.sqlite3")["killed"][:2] == ("in_progress", 1)
    async with History.in_state_dir(tmp_path) as history:
        [row] = await history.recent(5)
    assert (row.visit, row.outcome, row.door_opened, row.answered_by) == ("killed", INTERRUPTED, True, "sip:a@h")


# -- a locked database: never on the visit path, bounded at shutdown --


async def test_visit_path_calls_return_at_once_with_the_database_locked(tmp_path: Path) -> None:
    async with History(tmp_path / "h.db") as history:
        with locked(tmp_path / "h.db"):
            started = time.monotonic()
            history.begin(visit(1))
            await history.record(visit(1))
            history.begin(visit(2))
            took = time.monotonic() - started
            assert not await history.flush(0.5)  # really locked: nothing got in
            assert not history.health().ok and "locked" in history.health().detail
            assert {r.visit for r in await history.recent(5)} == {"v0001", "v0002"}  # reads still answer
        assert await history.flush(5)  # the writer's retry gets them in once the lock is gone
        assert history.health().ok
    assert took < 0.05
    assert rows(tmp_path / "h.db").keys() == {"v0001", "v0002"}


async def test_shutdown_is_bounded_and_spools_what_the_lock_kept_out(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db", close_timeout=1.0)
    await history.open()
    with locked(tmp_path / "h.db"):
        await history.record(visit(1))
        history.begin(visit(2))  # a visit still running at shutdown
        started = time.monotonic()
        await history.aclose()
        took = time.monotonic() - started
        assert history.spool_path.exists()
    assert took < 1.3
    assert rows(tmp_path / "h.db") == {}
    async with History(tmp_path / "h.db") as reopened:  # the next start
        by_id = {r.visit: r.outcome for r in await reopened.recent(10)}
    assert by_id == {"v0001": "door_opened", "v0002": INTERRUPTED}
    assert not history.spool_path.exists()


async def test_start_with_the_database_locked_does_not_wait_for_it(tmp_path: Path) -> None:
    async with History(tmp_path / "h.db"):
        pass
    with locked(tmp_path / "h.db"):
        history = History(tmp_path / "h.db", open_timeout=1.0)
        started = time.monotonic()
        assert not await history.open()
        assert time.monotonic() - started < 1.5
        await history.record(visit(1))
    assert await history.flush(5)
    await history.aclose()
    assert rows(tmp_path / "h.db").keys() == {"v0001"}


# -- damaged, deleted or replaced files --


@pytest.mark.parametrize("damage", ["not a database", "a damaged page"])
async def test_a_damaged_database_is_moved_aside_and_nothing_is_dropped(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "history.sqlite3"
    if damage == "not a database":
        path.write_bytes(b"this is not SQLite\n" * 300)
    else:
        async with History(path) as history:
            for n in range(300):
                await history.record(visit(n, failure="x" * 200))
        with path.open("r+b") as f:  # the pages after the header: the table's b-tree
            f.seek(4096 * 2)
            f.write(b"\xff" * 4096 * 3)
    before = path.read_bytes()
    with caplog.at_level(logging.WARNING, logger="daemon.history"):
        async with History(path) as history:
            assert history.health().ok and "moved aside" in history.health().detail
            await history.record(visit(1000))
    [aside] = files(tmp_path, "history.sqlite3.corrupt-*[0-9]Z")
    assert aside.read_bytes() == before
    assert [r.levelname for r in caplog.records] == ["ERROR"] and "damaged" in caplog.records[0].message
    assert rows(path).keys() == {"v1000"}


async def test_a_file_deleted_while_running_is_noticed_and_its_rows_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "history.sqlite3"
    async with History(path) as history:
        await history.record(visit(1))
        assert await history.flush(5)
        for leftover in files(tmp_path, "history.sqlite3*"):  # rm history.sqlite3*
            leftover.unlink()
        with caplog.at_level(logging.ERROR, logger="daemon.history"):
            health = await history.check()
        assert "deleted while running" in health.detail
        assert any("deleted while running" in r.message for r in caplog.records)
        await history.record(visit(2))
        assert await history.flush(5)
    assert rows(path).keys() == {"v0001", "v0002"}


async def test_a_file_replaced_while_running_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    async with History(path) as history:
        await history.record(visit(1))
        assert await history.flush(5)
        other = tmp_path / "restored.sqlite3"
        async with History(other) as restored:
            await restored.record(visit(7, outcome="busy"))
        os.replace(other, path)  # a backup restored over it, say
        health = await history.check()
        assert "replaced while running" in health.detail
        await history.record(visit(2))
        assert await history.flush(5)
    assert {v: o for v, (o, _, _) in rows(path).items()} == {
        "v0001": "door_opened",
        "v0002": "door_opened",
        "v0007": "busy",
    }


async def test_a_file_replaced_by_garbage_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    async with History(path) as history:
        await history.record(visit(1))
        assert await history.flush(5)
        garbage = tmp_path / "garbage"
        garbage.write_bytes(b"\0garbage" * 1000)
        os.replace(garbage, path)
        health = await history.check()
        assert health.ok and "moved aside" in health.detail, health
        await history.record(replace(visit(2), outcome="busy"))
        assert await history.flush(5)
    assert rows(path).keys() == {"v0001", "v0002"}
    assert len(files(tmp_path, "history.sqlite3.corrupt-*")) == 1


async def test_a_file_damaged_in_place_while_running_is_moved_aside_by_the_check(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    async with History(path) as history:
        for n in range(300):
            await history.record(visit(n, failure="x" * 200))
        assert await history.flush(5)
        await history.aclose()  # checkpointed: every row is in the main file now
    async with History(path) as history:
        with path.open("r+b") as f:  # same inode: only the integrity check can tell
            f.seek(4096 * 2)
            f.write(b"\xff" * 4096 * 3)
        health = await history.check()
        assert health.ok and "moved aside" in health.detail, health
        await history.record(visit(1000))
        assert await history.flush(5)
    assert rows(path).keys() == {"v1000"}
    assert len(files(tmp_path, "history.sqlite3.corrupt-*[0-9]Z")) == 1
