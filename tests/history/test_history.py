"""Visit history: survives reopening, keeps a backlog while the database cannot be written, never blocks the loop."""

from __future__ import annotations

import logging
import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import anyio
import pytest

from daemon.history import SCHEMA_VERSION, VisitHistory, VisitRecord

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def visit(n: int, **changes: object) -> VisitRecord:
    fields: dict[str, object] = {
        "visit": f"v{n:04d}",
        "apartment": "101",
        "button": "101",
        "started_at": T0 + timedelta(minutes=n),
        "outcome": "no_answer",
    }
    fields.update(changes)
    return VisitRecord(**fields)  # type: ignore[arg-type]


async def test_full_record_survives_reopen(tmp_path: Path) -> None:
    full = visit(
        1,
        outcome="door_opened",
        answered_by="sip:a@h",
        answered_at=T0 + timedelta(seconds=70),
        door_opened=True,
        opened_by="sip:a@h",
        open_method="dtmf",
        ended_at=T0 + timedelta(seconds=90),
        ring_seconds=9.5,
        call_seconds=20.0,
        duration_seconds=30.0,
        failure="",
        extra={"legs": ["sip:a@h", "sip:b@h"], "wrong_codes": 1},
    )
    async with VisitHistory.in_state_dir(tmp_path) as history:
        assert await history.record(full)
        await history.record(visit(2, failure="sip:a@h: 486 Busy Here", outcome="busy"))
    async with VisitHistory.in_state_dir(tmp_path) as history:
        recent = await history.recent(10)
    assert [r.visit for r in recent] == ["v0002", "v0001"]
    assert recent[1] == full
    assert recent[0].failure == "sip:a@h: 486 Busy Here"
    db = sqlite3.connect(tmp_path / "history.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


async def test_recent_orders_by_time_across_offsets_and_limits(tmp_path: Path) -> None:
    brt = timezone(timedelta(hours=-3))
    async with VisitHistory(tmp_path / "h.db") as history:
        await history.record(visit(1, started_at=datetime(2025, 3, 1, 10, 0, tzinfo=brt)))  # 13:00 UTC
        await history.record(visit(2, started_at=datetime(2025, 3, 1, 12, 30, tzinfo=UTC)))
        await history.record(visit(3, started_at=datetime(2025, 3, 1, 9, 0, tzinfo=UTC)))
        assert [r.visit for r in await history.recent(2)] == ["v0001", "v0002"]


async def test_unwritable_database_keeps_a_backlog_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # As root, permissions do not stop SQLite; a regular file where the directory should be does.
    blocker = tmp_path / "state"
    blocker.write_text("not a directory")
    history = VisitHistory(blocker / "history.sqlite3")
    with caplog.at_level(logging.ERROR, logger="daemon.history"):
        assert not await history.open()
        for n in range(5):
            assert not await history.record(visit(n))
    assert history.backlog_size == 5
    assert len([r for r in caplog.records if "cannot write" in r.message]) == 1  # once per burst
    assert [r.visit for r in await history.recent(3)] == ["v0004", "v0003", "v0002"]
    blocker.unlink()  # the disk is back
    assert await history.record(visit(5))
    assert history.backlog_size == 0
    await history.aclose()
    async with VisitHistory(blocker / "history.sqlite3") as reopened:
        assert sorted(r.visit for r in await reopened.recent(100)) == [f"v{n:04d}" for n in range(6)]


async def test_full_disk_backlog_then_periodic_flush(tmp_path: Path) -> None:
    limit = {"pages": 0}

    def connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=5.0, check_same_thread=False, isolation_level=None)
        if limit["pages"]:
            db.execute(f"PRAGMA max_page_count = {limit['pages']}")  # SQLITE_FULL: what a full disk gives
        return db

    history = VisitHistory(tmp_path / "h.db", connect=connect)
    assert await history.open()
    await history.aclose()  # reconnect below with the page limit in force
    pages = sqlite3.connect(tmp_path / "h.db").execute("PRAGMA page_count").fetchone()[0]
    limit["pages"] = pages
    history = VisitHistory(tmp_path / "h.db", connect=connect)
    big = {"notes": "x" * 20000}
    assert not await history.record(visit(1, extra=big))
    assert "full" in history.last_error
    assert history.backlog_size == 1
    limit["pages"] = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(history.run, 0.05)
        with anyio.fail_after(5):
            while history.backlog_size:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert (await history.recent(1))[0].extra == big
    await history.aclose()


async def test_backlog_is_bounded(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    history = VisitHistory(tmp_path / "f" / "h.db", backlog_limit=3)
    for n in range(5):
        await history.record(visit(n))
    assert history.backlog_size == 3 and history.dropped == 2


async def test_concurrent_writes_all_land(tmp_path: Path) -> None:
    async with VisitHistory(tmp_path / "h.db") as history:
        async with anyio.create_task_group() as tg:
            for n in range(50):
                tg.start_soon(history.record, visit(n))
        assert history.backlog_size == 0
        assert len(await history.recent(100)) == 50


async def test_rerecording_a_visit_replaces_it(tmp_path: Path) -> None:
    async with VisitHistory(tmp_path / "h.db") as history:
        await history.record(visit(1))
        await history.record(visit(1, outcome="door_opened", door_opened=True))
        [only] = await history.recent(10)
    assert only.outcome == "door_opened" and only.door_opened


async def test_sqlite_never_runs_on_the_loop_thread(tmp_path: Path) -> None:
    loop_thread = threading.get_ident()
    seen: list[tuple[str, int]] = []
    history = VisitHistory(tmp_path / "h.db", on_db_thread=lambda op: seen.append((op, threading.get_ident())))
    async with history:
        await history.record(visit(1))
        await history.recent(5)
    assert {op for op, _ in seen} == {"write", "read"}
    assert all(ident != loop_thread for _, ident in seen)


async def test_newer_schema_is_refused_and_records_wait(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "h.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    history = VisitHistory(tmp_path / "h.db")
    assert not await history.record(visit(1))
    assert "newer" in history.last_error and history.backlog_size == 1
