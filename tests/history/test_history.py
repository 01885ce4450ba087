"""Visit history: survives reopening, keeps a backlog while the database cannot be written, SQLite only on its
own writer thread, secret-named fields never stored."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.history import SCHEMA_VERSION, History, VisitRecord

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
    async with History.in_state_dir(tmp_path) as history:
        await history.record(full)
        await history.record(visit(2, failure="sip:a@h: 486 Busy Here", outcome="busy"))
    async with History.in_state_dir(tmp_path) as history:
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
    async with History(tmp_path / "h.db") as history:
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
    history = History(blocker / "history.sqlite3")
    with caplog.at_level(logging.ERROR, logger="daemon.history"):
        assert not await history.open()
        for n in range(5):
            await history.record(visit(n))
        assert not await history.flush(0.3)
    assert history.backlog_size == 5
    assert not history.health().ok and "cannot write" in history.health().detail
    assert len([r for r in caplog.records if "cannot write" in r.message]) == 1  # once per burst
    assert [r.visit for r in await history.recent(3)] == ["v0004", "v0003", "v0002"]
    blocker.unlink()  # the disk is back
    await history.record(visit(5))
    assert await history.flush(5)
    assert history.backlog_size == 0 and history.health().ok
    await history.aclose()
    async with History(blocker / "history.sqlite3") as reopened:
        assert sorted(r.visit for r in await reopened.recent(100)) == [f"v{n:04d}" for n in range(6)]


async def test_full_disk_backlog_is_retried_by_the_writer(tmp_path: Path) -> None:
    limit = {"pages": 0}

    def connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=0.2, isolation_level=None)
        if limit["pages"]:
            db.execute(f"PRAGMA max_page_count = {limit['pages']}")  # SQLITE_FULL: what a full disk gives
        return db

    async with History(tmp_path / "h.db", connect=connect):
        pass  # created; reconnect below with the page limit in force
    limit["pages"] = sqlite3.connect(tmp_path / "h.db").execute("PRAGMA page_count").fetchone()[0]
    async with History(tmp_path / "h.db", connect=connect) as history:
        big = {"notes": "x" * 20000}
        await history.record(visit(1, extra=big))
        assert not await history.flush(0.3)
        assert "full" in history.last_error and history.backlog_size == 1
        limit["pages"] = 0  # space again: the writer's own retry gets it out, nobody has to ask
        assert await history.flush(5)
        assert (await history.recent(1))[0].extra == big


async def test_overflow_spool_is_replayed(tmp_path: Path) -> None:
    # A database that refuses writes (a newer schema) but a writable directory: the overflow goes to the spool.
    db = sqlite3.connect(tmp_path / "h.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    history = History(tmp_path / "h.db", backlog_limit=4)
    await history.open()
    for n in range(10):
        await history.record(visit(n))
    assert not await history.flush(0.2)
    assert history.backlog_size <= 4
    await history.aclose()
    assert len(history.spool_path.read_text().splitlines()) == 10 and history.dropped == 0
    (tmp_path / "h.db").unlink()  # the operator deals with the newer file: the next start replays the spool
    async with History(tmp_path / "h.db") as reopened:
        assert sorted(r.visit for r in await reopened.recent(100)) == [f"v{n:04d}" for n in range(10)]
    assert not history.spool_path.exists()


async def test_concurrent_writes_all_land(tmp_path: Path) -> None:
    async with History(tmp_path / "h.db") as history:
        for n in range(50):
            await history.record(visit(n))
        assert await history.flush(5)
        assert history.backlog_size == 0
        assert len(await history.recent(100)) == 50


async def test_rerecording_a_visit_replaces_it(tmp_path: Path) -> None:
    async with History(tmp_path / "h.db") as history:
        await history.record(visit(1))
        await history.flush(5)
        await history.record(visit(1, outcome="door_opened", door_opened=True))
        [only] = await history.recent(10)
    assert only.outcome == "door_opened" and only.door_opened


async def test_sqlite_runs_on_one_thread_never_the_loop(tmp_path: Path) -> None:
    threads: set[int] = set()

    def connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=0.2, isolation_level=None)  # check_same_thread: on, as it should be
        db.set_trace_callback(lambda _sql: threads.add(threading.get_ident()))
        return db

    async with History(tmp_path / "h.db", connect=connect) as history:
        history.begin(visit(1))
        await history.record(visit(1))
        await history.recent(5)
        await history.check()
    assert len(threads) == 1 and threading.get_ident() not in threads


async def test_newer_schema_is_refused_and_records_wait(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "h.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    async with History(tmp_path / "h.db") as history:
        await history.record(visit(1))
        assert not await history.flush(0.2)
        assert "newer" in history.last_error and history.backlog_size == 1
        assert not history.health().ok


async def test_secret_named_extra_fields_are_never_stored_or_shown(tmp_path: Path) -> None:
    async with History(tmp_path / "h.db") as history:
        await history.record(visit(1, extra={"code": "4711", "matched_code": 2, "digits": "47", "legs": 2}))
        [shown] = await history.recent(1)  # what the control socket's history reply is made from
        assert shown.extra == {"code": "*", "matched_code": "*", "digits": "*", "legs": 2}
    raw = json.loads(sqlite3.connect(tmp_path / "h.db").execute("SELECT extra FROM visits").fetchone()[0])
    assert raw == {"code": "*", "matched_code": "*", "digits": "*", "legs": 2}


def _rows_in_file(path: Path) -> int:
    with sqlite3.connect(path) as db:
        try:
            return int(db.execute("SELECT count(*) FROM visits").fetchone()[0])
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0


async def test_a_record_waits_behind_the_visits_start_and_a_flush_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A visit's first row is handed over in the milliseconds of its INVITE: the commit waits WRITE_BEHIND_S for
    more rows, so on a Pi-sized CPU it does not take the INVITE's CPU (issue 18); a flush writes at once."""
    import anyio

    from daemon.history import _writer

    monkeypatch.setattr(_writer, "WRITE_BEHIND_S", 60.0)  # a wait no test outlasts: only a question can end it
    async with History.in_state_dir(tmp_path) as history:
        history.begin(visit(1))
        await anyio.sleep(0.2)
        assert _rows_in_file(history.path) == 0  # still waiting behind the visit's start
        with anyio.fail_after(10):  # the flush's question ends the wait
            assert await history.flush()
        assert _rows_in_file(history.path) == 1
