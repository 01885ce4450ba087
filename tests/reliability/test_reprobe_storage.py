"""Re-probe of issue 12's "nothing lost" class on a real full disk (a tmpfs of a few KiB, as root).

Before: a batch of events that half fit left a torn line in events.jsonl, and the first event written after
space came back was glued to it: one unreadable line, two events gone (found with a 1 MiB tmpfs state_dir,
a filler file and a running intercomd). The history spool's single ``os.write`` could write short on a full
disk and still report every record spooled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from daemon.history._record import VisitRecord
from daemon.history._spool import append_spool, read_spool
from daemon.visitlog import VisitLog
from tests.reliability._daemon import Intercomd, daemon_config
from tests.support.peers import Baresip

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs")


@contextlib.contextmanager
def tiny_disk(path: Path, size: str = "64k") -> Iterator[Path]:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` until about ``leave`` bytes are free; the filler file (delete it to make room)."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with contextlib.suppress(OSError), filler.open("wb") as f:
        f.write(b"x" * max(0, free - leave))
    return filler


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@needs_root
@pytest.mark.anyio
async def test_a_full_disk_never_tears_an_event_line_nor_takes_the_next_event_with_it(tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "state") as disk:
        visit_log = VisitLog.in_state_dir(disk)
        async with anyio.create_task_group() as tg:
            await tg.start(visit_log.run)
            visit_log.event("V1", "BUTTON_PRESSED", "101", "before the disk filled")
            await visit_log.flush()
            filler = fill(disk, leave=3000)
            for i in range(40):  # a few fit, one is cut in the middle, the rest fail whole
                visit_log.event("V2", "RINGING", f"sip:{i}@host", "x" * 300)
                await visit_log.flush()
            assert not visit_log.health().ok
            filler.unlink()
            visit_log.event("V3", "OUTCOME", "A", "after space came back")
            await visit_log.flush()
            await visit_log.aclose()
        events = [json.loads(line) for line in lines(disk / "events.jsonl")]  # every line reads
        assert events[0]["text"] == "before the disk filled"
        assert events[-1]["text"] == "after space came back"
        assert visit_log.health().ok


@needs_root
def test_the_history_spool_never_reports_records_it_did_not_write(tmp_path: Path) -> None:
    records = [
        VisitRecord(f"V{i}", "A", "101", datetime(2026, 1, 1, tzinfo=UTC), "no_answer", failure="y" * 2000)
        for i in range(5)
    ]
    with tiny_disk(tmp_path / "state") as disk:
        spool = disk / "history.sqlite3.spool.jsonl"
        append_spool(spool, records[:1])
        fill(disk, leave=600)
        with pytest.raises(OSError):
            append_spool(spool, records[1:])  # before: a short write, and "4 spooled"
        assert [r.visit for r in read_spool(spool)] == ["V0"]
        (disk / "filler").unlink()
        append_spool(spool, records[1:2])
        assert [r.visit for r in read_spool(spool)] == ["V0", "V1"]


@pytest.mark.anyio
async def test_an_event_log_torn_by_a_crash_loses_only_the_torn_line(tmp_path: Path) -> None:
    # kill -9 or a power cut in the middle of a write leaves a line without its end.
    (tmp_path / "events.jsonl").write_text(
        '{"event": "BUTTON_PRESSED", "visit": "V0"}\n{"event": "RING', encoding="utf-8"
    )
    visit_log = VisitLog.in_state_dir(tmp_path)
    async with anyio.create_task_group() as tg:
        await tg.start(visit_log.run)
        visit_log.event("V1", "BUTTON_PRESSED", "101", "the next start")
        await visit_log.flush()
        await visit_log.aclose()
    first, torn, after = lines(tmp_path / "events.jsonl")
    assert json.loads(first)["visit"] == "V0" and torn == '{"event": "RING'
    assert json.loads(after)["text"] == "the next start"  # before: glued to the torn line, unreadable


def _row(database: Path, visit: str) -> tuple[str, int, str] | None:
    with contextlib.closing(sqlite3.connect(database, timeout=1)) as db:
        found = db.execute("SELECT outcome, door_opened, answered_by FROM visits WHERE visit = ?", (visit,)).fetchone()
    return None if found is None else (str(found[0]), int(found[1]), str(found[2]))


@pytest.mark.peers
def test_kill_9_after_the_door_opened_leaves_a_row_that_says_it_opened(tmp_path: Path, prompt_cache: Path) -> None:
    # Before: the row written at the visit's start was never updated, so kill -9 after DOOR_OPEN left
    # "interrupted, answered by -, door opened: no" in history although the relay had energized.
    with Baresip(tmp_path, user="a") as phone:
        config = daemon_config(tmp_path, prompt_cache, edits={'"sip:101@127.0.0.1:5080"': f'"{phone.uri}"'})
        database = tmp_path / "state" / "history.sqlite3"
        daemon = Intercomd(config).start()
        try:
            visit = daemon.ctl("press", "101", "--json")
            visit_id = str(json.loads(visit.stdout)["visit"])
            phone.wait_event_sync("CALL_ESTABLISHED", 10)
            time.sleep(0.3)  # pjsua needs the media up before it hears RFC 2833 digits
            for digit in "4711":
                phone.command("sndcode", digit)
                time.sleep(0.3)
            deadline = time.monotonic() + 5
            while (row := _row(database, visit_id)) is None or not row[1]:
                assert time.monotonic() < deadline, f"the row never said the door opened: {row}"
                time.sleep(0.05)
            assert row == ("in_progress", 1, phone.uri)
        finally:
            daemon.stop(signal.SIGKILL)
        with Intercomd(config) as restarted:
            (record,) = json.loads(restarted.ctl("history", "--json").stdout)
    assert (record["outcome"], record["door_opened"], record["answered_by"]) == ("interrupted", True, phone.uri)
