"""The visit event log: exact line format, the JSONL file, subscribers, and no door code in any output."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from pathlib import Path

import anyio
import pytest

from daemon.flow.ports import VisitLogPort
from daemon.visitlog import StorageHealth, VisitEvent, VisitLog, new_visit_id

LINE = re.compile(r"^([A-Z_]+) \| (\{.*\})$")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def parse(line: str) -> tuple[str, dict[str, object]]:
    m = LINE.match(line)
    assert m, line
    return m.group(1), json.loads(m.group(2))


def test_visit_ids_are_short_unique_and_sortable() -> None:
    ids = [new_visit_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(len(i) == 12 and i.isalnum() for i in ids)
    assert new_visit_id(1_700_000_000.0) < new_visit_id(1_700_000_000.002) < new_visit_id(2_000_000_000.0)


def test_line_format_is_exact(caplog: pytest.LogCaptureFixture) -> None:
    mono = Clock()
    vlog = VisitLog(None, clock=lambda: 1_700_000_000.25, monotonic=mono)
    visit = vlog.start_visit()
    mono.now += 2.5
    with caplog.at_level(logging.INFO, logger="daemon.visitlog"):
        vlog.event(visit, "BUTTON_PRESSED", "101", "button 101 pressed", button="101")
    [record] = caplog.records
    name, fields = parse(record.getMessage())
    assert name == "BUTTON_PRESSED"
    assert list(fields)[:4] == ["target", "text", "timestamp", "elapsed_seconds"]
    assert fields["target"] == "101" and fields["text"] == "button 101 pressed"
    assert fields["elapsed_seconds"] == 2.5 and fields["visit"] == visit and fields["button"] == "101"
    stamp = datetime.fromisoformat(str(fields["timestamp"]))
    assert stamp.tzinfo is not None and stamp.timestamp() == 1_700_000_000.25
    assert record.__dict__["visit_id"] == visit  # the field a journald handler attaches
    assert record.__dict__["visit_event"] == "BUTTON_PRESSED"
    assert record.name == "daemon.visitlog"


def test_elapsed_counts_from_first_event_and_outcome_ends_the_visit() -> None:
    mono = Clock()
    vlog = VisitLog(None, monotonic=mono)
    assert vlog.emit("v1", "BUTTON_PRESSED").elapsed_seconds == 0.0
    mono.now += 1.25
    assert vlog.emit("v1", "RINGING", "sip:a@h").elapsed_seconds == 1.25
    mono.now += 1.0
    assert vlog.emit("v1", "OUTCOME", "101", "no_answer").elapsed_seconds == 2.25
    assert vlog.emit("v1", "LATE").elapsed_seconds == 0.0
    mono.now += 5
    assert vlog.emit("-", "PRESS_REFUSED").elapsed_seconds == 0.0  # panel events have no visit clock
    mono.now += 5
    assert vlog.emit("-", "TAMPER").elapsed_seconds == 0.0
    assert len(vlog.new_visit_id()) == 12


@pytest.mark.parametrize(
    ("name", "text", "shown"),
    [
        ("DTMF", "rfc2833: 4", "telephone-event: *"),
        ("DTMF", "info: #", "sip-info: *"),
        ("DTMF", "4", "*"),
        ("DTMF", "rfc2833: door already open", "telephone-event: door already open"),
        ("CODE_REJECTED", "sip:a@h: 1234#", "sip:a@h: *"),  # a run of keys is one "*": no length
        ("CODE_ACCEPTED", "12345678", "*"),
        ("DTMF_IGNORED", "info: not from the answered call", "sip-info: not from the answered call"),
        ("DTMF_IGNORED", "rfc2833: 9 after the door opened", "telephone-event: * after the door opened"),
        ("ANSWERED", "apartment 101", "apartment 101"),
        ("LOCKOUT", "3 wrong codes: locked 300 s", "3 wrong codes: locked 300 s"),
    ],
)
def test_keypad_events_carry_no_key(name: str, text: str, shown: str) -> None:
    assert VisitLog(None).emit("v", name, "sip:101@h", text).text == shown


def test_a_resident_uri_containing_a_codes_digits_is_written_unaltered(caplog: pytest.LogCaptureFixture) -> None:
    # The old masking turned this into "sip:res@**7.0.0.1" next to the clear URI elsewhere: the code given away.
    uri = "sip:1234@127.0.0.1:5062"
    vlog = VisitLog(None)
    with caplog.at_level(logging.INFO, logger="daemon.visitlog"):
        for name in ("CALL_START", "RINGING", "ANSWERED", "HANGUP", "DTMF", "CODE_REJECTED"):
            ev = vlog.emit("v", name, uri, f"{uri}: 200 OK" if name == "HANGUP" else "", uri=uri, leg=1)
            assert ev.target == uri, name
            if name not in ("DTMF", "CODE_REJECTED"):
                assert ev.extra == {"uri": uri, "leg": 1} and ev.text in ("", f"{uri}: 200 OK")
    assert all(uri in r.getMessage() for r in caplog.records)


def test_a_dtmf_events_fields_and_journal_line_hold_no_digit(caplog: pytest.LogCaptureFixture) -> None:
    vlog = VisitLog(None, clock=lambda: 1_700_000_000.0)
    with caplog.at_level(logging.DEBUG):
        for typed in "0123456789*#ABCD":
            vlog.event(
                "visit", "DTMF", "sip:res@h", f"rfc2833: {typed}", digit=typed, key=typed, method="rfc2833", value=typed
            )
        vlog.event("visit", "CODE_ACCEPTED", "sip:res@h", "code 4711 matched", code_index=2, length=4, prefix="47")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 17
    for line in lines:
        name, fields = parse(line)
        del fields["timestamp"], fields["elapsed_seconds"]  # the clock's digits, not the keypad's
        assert not any(ch.isdigit() for ch in json.dumps(fields)), line
        assert name in ("DTMF", "CODE_ACCEPTED")
    name, last = parse(lines[-1])
    assert last["code_index"] == last["length"] == last["prefix"] == "*"  # nothing derived from a code


async def test_no_typed_key_reaches_the_file_the_journal_or_a_subscriber(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    vlog = VisitLog(tmp_path / "events.jsonl")
    events = vlog.subscribe()
    async with anyio.create_task_group() as tg:
        await tg.start(vlog.run)
        with caplog.at_level(logging.DEBUG):
            vlog.event("v", "DTMF", "sip:a@h", "rfc2833: 4711")
            vlog.event("v", "CODE_REJECTED", "sip:a@h", "got 4711", code="4711", digits="47", attempts=2)
            vlog.event("v", "OUTCOME", "101", "door_opened", matched_code="4711", typed_digits=4)
        await vlog.aclose()
    # The clock's fields go before looking for the digits: at 14:47, or 0.047 s in, they hold "47" themselves.
    journal = [_without_clock(r.getMessage()) for r in caplog.records]
    assert not any("47" in line for line in journal)  # whatever else logged meanwhile on a loaded machine
    outputs = [line for line in journal if line.split(" | ")[0] in ("DTMF", "CODE_REJECTED", "OUTCOME")]
    outputs.append((tmp_path / "events.jsonl").read_text())
    async with events:
        outputs += [e.line() async for e in events]
    assert len(outputs) == 7 and not any("47" in _without_clock(out) for out in outputs)
    rejected = json.loads((tmp_path / "events.jsonl").read_text().splitlines()[1])
    assert rejected["code"] == "*" and rejected["digits"] == "*" and rejected["attempts"] == 2


def _without_clock(text: str) -> str:
    return re.sub(r'"(timestamp|elapsed_seconds)": ("[^"]*"|[\d.]+)', "", text)


def test_digits_in_other_fields_are_written_as_given() -> None:
    vlog = VisitLog(None)
    ev = vlog.emit("v", "CALL_START", "sip:12@10.4.7.11", "dialing 4711 12")
    assert (ev.target, ev.text) == ("sip:12@10.4.7.11", "dialing 4711 12")


async def test_jsonl_file_gets_one_object_per_event(tmp_path: Path) -> None:
    vlog = VisitLog.in_state_dir(tmp_path / "state")
    names = [
        "BUTTON_PRESSED",
        "SYNTHESIS_START",
        "PLAYBACK_START",
        "PLAYBACK_END",
        "CALL_START",
        "RINGING",
        "ANSWERED",
        "DTMF",
        "DOOR_OPEN",
        "HANGUP",
        "OUTCOME",
    ]
    async with anyio.create_task_group() as tg:
        await tg.start(vlog.run)
        visit = vlog.start_visit()
        for name in names:
            vlog.event(visit, name, "101", f"text for {name}", leg=1)
        assert await vlog.flush(5)
        lines = (tmp_path / "state" / "events.jsonl").read_text().splitlines()
        assert [json.loads(line)["event"] for line in lines] == names
        vlog.event(visit, "LATE")
        await vlog.aclose()
    lines = (tmp_path / "state" / "events.jsonl").read_text().splitlines()
    assert len(lines) == len(names) + 1
    first = json.loads(lines[0])
    assert first["visit"] == visit and first["leg"] == 1 and first["target"] == "101"


async def test_unwritable_file_does_not_stop_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "blocker").write_text("")
    vlog = VisitLog(tmp_path / "blocker" / "events.jsonl")
    events = vlog.subscribe()
    async with anyio.create_task_group() as tg:
        await tg.start(vlog.run)
        with caplog.at_level(logging.ERROR, logger="daemon.visitlog"):
            vlog.event("v", "BUTTON_PRESSED")
            assert await vlog.flush(5)
            vlog.event("v", "OUTCOME")
            await vlog.flush(5)
        await vlog.aclose()
    assert vlog.dropped == 2
    assert len([r for r in caplog.records if "cannot write" in r.message]) == 1
    async with events:
        assert [e.name async for e in events] == ["BUTTON_PRESSED", "OUTCOME"]


async def test_subscriber_sees_events_then_end_on_close() -> None:
    vlog = VisitLog(None)
    stream = vlog.subscribe()
    vlog.event("v", "BUTTON_PRESSED", "101")
    vlog.event("v", "CALL_START", "sip:a@h")
    await vlog.aclose()
    with anyio.fail_after(2):
        got = [e async for e in stream]
    stream.close()
    assert [(e.name, e.target) for e in got] == [("BUTTON_PRESSED", "101"), ("CALL_START", "sip:a@h")]


async def test_slow_subscriber_is_disconnected_with_a_note_and_others_go_on() -> None:
    vlog = VisitLog(None)
    slow = vlog.subscribe(buffer=3)
    fast = vlog.subscribe(buffer=3)
    received: list[VisitEvent] = []
    for n in range(10):
        vlog.event("v", "DTMF", text=str(n))
        received.append(await fast.receive())
    assert vlog.subscriber_count == 1
    with anyio.fail_after(2):
        got = [e async for e in slow]
    slow.close()
    await vlog.aclose()
    fast.close()
    assert [e.name for e in got] == ["DTMF"] * 3 + ["SUBSCRIBER_DROPPED"]
    assert "disconnected" in got[-1].text
    assert len(received) == 10


async def test_satisfies_the_runner_port() -> None:
    port: VisitLogPort = VisitLog(None)
    port.event("v", "HANGUP", "sip:a@h", "200 OK", leg=0)


async def test_closed_subscriber_is_forgotten() -> None:
    vlog = VisitLog(None)
    stream = vlog.subscribe()
    stream.close()
    vlog.event("v", "BUTTON_PRESSED")
    assert vlog.subscriber_count == 0


async def test_health_follows_the_file(tmp_path: Path) -> None:
    assert VisitLog(None).health().ok
    path = tmp_path / "events.jsonl"
    vlog = VisitLog(path)
    async with anyio.create_task_group() as tg:
        await tg.start(vlog.run)
        vlog.event("v", "BUTTON_PRESSED")
        assert await vlog.flush(5)
        assert vlog.health() == StorageHealth(True, f"{path}: ok")
        path.unlink()  # deleted while running: the next batch starts a new file, and health says so
        vlog.event("v", "OUTCOME")
        assert await vlog.flush(5)
        assert vlog.health().ok and "deleted or moved while running" in vlog.health().detail
        (tmp_path / "other").write_text("")
        path.rename(tmp_path / "events.jsonl.1")  # logrotate's move, then create: another file under the name
        (tmp_path / "other").rename(path)
        vlog.event("v", "BUTTON_PRESSED")
        assert await vlog.flush(5)
        assert "rotated or replaced while running" in vlog.health().detail
        assert [json.loads(line)["event"] for line in (tmp_path / "events.jsonl.1").read_text().splitlines()] == [
            "OUTCOME"
        ]
        path.unlink()
        path.mkdir()  # unwritable now
        vlog.event("v", "BUTTON_PRESSED")
        await vlog.flush(5)
        assert not vlog.health().ok and "cannot write" in vlog.health().detail
        await vlog.aclose()


async def test_the_file_is_written_behind_the_events_and_flush_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A press's events come in the milliseconds of its INVITE: the file write waits WRITE_BEHIND_S, so on a
    Pi-sized CPU it does not take the INVITE's CPU (issue 18); flush() returns once they are written."""
    import daemon.visitlog

    monkeypatch.setattr(daemon.visitlog, "WRITE_BEHIND_S", 0.5)
    vlog = VisitLog.in_state_dir(tmp_path)
    async with anyio.create_task_group() as tg:
        await tg.start(vlog.run)
        vlog.event(vlog.start_visit(), "BUTTON_PRESSED", "101")
        await anyio.sleep(0.1)
        assert not (tmp_path / "events.jsonl").exists()
        assert await vlog.flush(5)
        assert len((tmp_path / "events.jsonl").read_text().splitlines()) == 1
        await vlog.aclose()


def test_the_journal_line_is_not_built_when_info_is_not_logged(monkeypatch: pytest.MonkeyPatch) -> None:
    """The JSON line costs CPU on the visit's path (issue 18): built only when a handler writes it (the daemon's
    writes INFO a moment later on its own thread: daemon.logwriter), never when INFO is not logged."""
    built: list[str] = []
    real_line = VisitEvent.line

    def line(self: VisitEvent) -> str:
        built.append(self.name)
        return real_line(self)

    monkeypatch.setattr(VisitEvent, "line", line)
    logger = logging.getLogger("test.visitlog.quiet")
    logger.setLevel(logging.WARNING)
    VisitLog(None, logger=logger).event("v", "CALL_START", "sip:101@h")
    assert built == []
    logger.setLevel(logging.INFO)
    logger.propagate = False  # set here, in the test's body: pytest's own handlers would format the record
    try:
        VisitLog(None, logger=logger).event("v", "CALL_START", "sip:101@h")
        assert built == []  # logged, but nothing has written it yet
        written: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: written.append(record.getMessage())  # type: ignore[method-assign]
        logger.addHandler(handler)
        VisitLog(None, logger=logger).event("v", "CALL_START", "sip:101@h")
        assert built == ["CALL_START"] and written[0].startswith("CALL_START | {")
    finally:
        logger.propagate = True
        logger.handlers.clear()
