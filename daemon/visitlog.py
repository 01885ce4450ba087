"""The visit event log: one structured line per event, in the form the system this replaces used.

``BUTTON_PRESSED | {"target": "101", "text": "...", "timestamp": "2025-...", "elapsed_seconds": 0.0, ...}``

Each event goes three ways: to ``logging`` (with the visit id as ``extra`` ``visit_id``, so a journald
handler can attach it as a field), to ``events.jsonl`` under ``state_dir`` (one JSON object per line,
written by :meth:`VisitLog.run`, a task the app owns, in a worker thread), and to live subscribers
(``intercomctl events --follow``). :meth:`VisitLog.event` is synchronous and never blocks: it is called
from the visit runner on the loop thread.

Typed keys never reach any of the three, by structure rather than by searching text for codes
(:mod:`daemon.redaction`): an event that carries keys (DTMF, a code accepted or rejected) is written with
its method and ``*`` and only its known fields; a field named like a secret is ``*`` in every event; every
other field is written exactly as given (a resident URI that contains a code's digits included).

:meth:`VisitLog.health` says whether the file is being written, and notices it being deleted or replaced
(logrotate's move-and-recreate is the usual reason: the next batch makes a new file).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from daemon.history import StorageHealth
from daemon.jsonl import append_lines
from daemon.logwriter import LazyText
from daemon.redaction import KEYPAD_EVENTS, redact_field, redact_keypad_text

__all__ = ["KEYPAD_EVENTS", "NO_VISIT", "StorageHealth", "VisitEvent", "VisitLog", "new_visit_id"]

log = logging.getLogger(__name__)

NO_VISIT = frozenset({"", "-"})
# The file writer waits this long after an event for the ones that follow it: a press's BUTTON_PRESSED and
# CALL_START come in the same milliseconds as its INVITE, and on a Pi-sized CPU (a CPU quota, issue 18) a write in
# a worker thread right then took the CPU the INVITE needed. flush() still returns once they are written.
WRITE_BEHIND_S = 0.1
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _base32(value: int, width: int) -> str:
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(width)))


_last_id_ms = 0


def new_visit_id(now: float | None = None) -> str:
    """A short id that sorts by time: 9 characters of milliseconds (good to year 3085) and 3 random ones.

    Ids made in the same millisecond by this process still sort in creation order: the clock part
    is bumped past the previous one.
    """
    global _last_id_ms  # noqa: PLW0603  (process-wide monotonic guard, touched only here)
    ms = int((time.time() if now is None else now) * 1000)
    if now is None:
        ms = _last_id_ms = max(ms, _last_id_ms + 1)
    return _base32(ms, 9) + _base32(secrets.randbits(15), 3)


@dataclass(frozen=True)
class VisitEvent:
    visit: str
    name: str
    target: str
    text: str
    timestamp: datetime
    elapsed_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "text": self.text,
            "timestamp": self.timestamp.isoformat(),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "visit": self.visit,
            **self.extra,
        }

    def line(self) -> str:
        """``NAME | {json}``: the log line."""
        return f"{self.name} | {json.dumps(self.fields(), ensure_ascii=False, default=str)}"

    def json(self) -> str:
        """One events.jsonl line (without the newline)."""
        return json.dumps({"event": self.name, **self.fields()}, ensure_ascii=False, default=str)


class VisitLog:
    """Visit events to logging, a JSONL file and subscribers. ``path`` None: no file.

    ``clock`` (wall, for timestamps) and ``monotonic`` (for elapsed seconds) are injectable for tests.
    """

    def __init__(
        self,
        path: Path | str | None,
        *,
        logger: logging.Logger | None = None,
        queue_size: int = 10_000,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = None if path is None else Path(path)
        self._logger = logger or log
        self._clock, self._monotonic = clock, monotonic
        self._started: dict[str, float] = {}
        self._subscribers: list[tuple[MemoryObjectSendStream[VisitEvent], int]] = []
        # Only with a file: a stream never closed would warn when collected.
        self._queue_send: MemoryObjectSendStream[VisitEvent] | None = None
        self._queue: MemoryObjectReceiveStream[VisitEvent] | None = None
        if self.path is not None:
            self._queue_send, self._queue = anyio.create_memory_object_stream[VisitEvent](queue_size)
        self._limiter = anyio.CapacityLimiter(1)
        self._written = anyio.Event()
        self._writer_done = anyio.Event()
        self._dropped = 0  # events the file missed (queue full, or the file unwritable)
        self._unwritten = 0  # queued or being written: what flush() waits for
        self._running = False
        self._failing = False
        self._identity: tuple[int, int] | None = None  # the file the last batch went to
        self._note = ""  # the last time the file was found gone or replaced
        self._last_error = ""

    @classmethod
    def in_state_dir(cls, state_dir: Path | str, **kwargs: Any) -> VisitLog:
        return cls(Path(state_dir) / "events.jsonl", **kwargs)

    @property
    def dropped(self) -> int:
        return self._dropped

    def health(self) -> StorageHealth:
        """Whether events reach the file (for ``status`` and ``selftest``); without a file, always ok."""
        if self.path is None:
            return StorageHealth(True, "no event file")
        if self._failing:
            return StorageHealth(
                False, f"{self.path}: cannot write ({self._last_error}); {self._dropped} event(s) lost"
            )
        parts = [f"{self.path}: ok"]
        if self._dropped:
            parts.append(f"{self._dropped} event(s) not written since start")
        if self._note:
            parts.append(self._note)
        return StorageHealth(True, "; ".join(parts))

    @staticmethod
    def new_visit_id() -> str:
        return new_visit_id()

    def start_visit(self, visit: str | None = None) -> str:
        """Begin a visit (a new id unless given): its events' ``elapsed_seconds`` count from now."""
        visit = visit or new_visit_id()
        self._started[visit] = self._monotonic()
        return visit

    def end_visit(self, visit: str) -> None:
        self._started.pop(visit, None)

    # -- the event --

    def event(self, visit: str, name: str, target: str = "", text: str = "", **extra: object) -> None:
        """Record one event (:class:`~daemon.flow.ports.VisitLogPort`). Loop thread; never blocks."""
        self.emit(visit, name, target, text, **extra)

    def emit(self, visit: str, name: str, target: str = "", text: str = "", **extra: object) -> VisitEvent:
        """As :meth:`event`, returning the event as logged (masked). An OUTCOME ends the visit's clock."""
        now = self._monotonic()
        # "-" (or ""): a panel event outside any visit, such as a refused press; it has no clock
        started = now if visit in NO_VISIT else self._started.setdefault(visit, now)
        if name == "OUTCOME":
            self.end_visit(visit)
        keypad = name in KEYPAD_EVENTS
        ev = VisitEvent(
            visit,
            name,
            target,  # who or what (a URI, an apartment): written as given
            redact_keypad_text(text) if keypad else text,
            datetime.fromtimestamp(self._clock(), UTC).astimezone(),
            now - started,
            {k: redact_field(k, v, keypad=keypad) for k, v in extra.items()},
        )
        if self._logger.isEnabledFor(logging.INFO):
            # The JSON line is built when the log line is written (the daemon's handler writes INFO a moment later,
            # on its own thread: daemon.logwriter), not here on the visit's path.
            self._logger.info("%s", LazyText(ev.line), extra={"visit_id": visit, "visit_event": name})
        if self._queue_send is not None:
            try:
                self._queue_send.send_nowait(ev)
                self._unwritten += 1
            except anyio.WouldBlock:
                self._count_drop("the writer is behind")
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._count_drop("the log is closed")
        self._publish(ev)
        return ev

    def _count_drop(self, why: str) -> None:
        self._dropped += 1
        if self._dropped == 1 or self._dropped % 1000 == 0:
            log.error("visit log %s: event(s) not written to the file (%s); %d so far", self.path, why, self._dropped)

    # -- subscribers --

    def subscribe(self, buffer: int = 256) -> MemoryObjectReceiveStream[VisitEvent]:
        """A stream of every event from now on. Close it to unsubscribe.

        A subscriber that falls ``buffer`` events behind gets a final ``SUBSCRIBER_DROPPED`` event and its
        stream ends: one stalled client never holds up the visit or grows memory without bound.
        """
        send, receive = anyio.create_memory_object_stream[VisitEvent](buffer + 1)  # +1: room for the note
        self._subscribers.append((send, buffer))
        return receive

    @asynccontextmanager
    async def event_dicts(self) -> AsyncIterator[AsyncIterator[dict[str, object]]]:
        """Subscribed for the block: each event as the flat dict adapters publish (``{"event": NAME, ...}``)."""
        stream = self.subscribe()

        async def fields() -> AsyncIterator[dict[str, object]]:
            async for event in stream:
                yield {"event": event.name, **event.fields()}

        try:
            yield fields()
        finally:
            stream.close()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def _publish(self, ev: VisitEvent) -> None:
        keep: list[tuple[MemoryObjectSendStream[VisitEvent], int]] = []
        for send, limit in self._subscribers:
            try:
                if send.statistics().current_buffer_used >= limit:
                    note = f"subscriber fell {limit} events behind and was disconnected"
                    send.send_nowait(VisitEvent("", "SUBSCRIBER_DROPPED", "", note, ev.timestamp, 0.0))
                    log.warning("visit log: a %s", note)
                    send.close()
                    continue
                send.send_nowait(ev)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.WouldBlock):
                send.close()  # the subscriber went away
                continue
            keep.append((send, limit))
        self._subscribers = keep

    # -- the file writer --

    async def run(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        """The JSONL writer: ``await tg.start(log.run)`` in the app's task group; returns after :meth:`aclose`."""
        queue = self._queue
        self._running = True
        task_status.started()
        if queue is None:  # no file: nothing to write
            return
        try:
            async with queue:
                async for ev in queue:
                    await anyio.sleep(WRITE_BEHIND_S)
                    batch = [ev]
                    while len(batch) < 500:
                        try:
                            batch.append(queue.receive_nowait())
                        except (anyio.WouldBlock, anyio.EndOfStream):
                            break
                    await self._write(batch)
        except anyio.ClosedResourceError:
            log.error("visit log %s: closed before its writer started; queued events not written", self.path)
        finally:
            self._writer_done.set()

    async def _write(self, batch: list[VisitEvent]) -> None:
        text = "".join(ev.json() + "\n" for ev in batch)
        assert self.path is not None  # run() only gets events when there is a path
        try:
            with anyio.fail_after(10):
                # abandoned on timeout: a write stuck in a dead file system must not hold the writer for ever
                identity = await anyio.to_thread.run_sync(
                    _append, self.path, text, limiter=self._limiter, abandon_on_cancel=True
                )
        except (OSError, TimeoutError) as exc:
            self._dropped += len(batch)
            self._last_error = f"{type(exc).__name__}: {exc}"
            if not self._failing:
                self._failing = True  # once per failure burst; the lines are still in the journal
                log.error("visit log %s: cannot write (%s); events go to the journal only", self.path, exc)
        else:
            existed, now_identity = identity
            if self._identity is not None and (not existed or now_identity != self._identity):
                # Opened per batch, so a moved or deleted file is simply made anew; say when it happened.
                # (Not existing is the sure sign: a new file may get the deleted one's inode number.)
                what = "rotated or replaced" if existed else "deleted or moved"
                self._note = f"file {what} while running, a new one started {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
                log.info("visit log %s: %s", self.path, self._note)
            self._identity = now_identity
            if self._failing:
                self._failing = False
                log.warning("visit log %s: writable again", self.path)
        self._unwritten -= len(batch)
        self._written.set()
        self._written = anyio.Event()

    async def flush(self, timeout: float = 5.0) -> bool:  # noqa: ASYNC109  (answers a bool rather than raising)
        """Wait until every queued event is in the file; False if ``timeout`` passed first."""
        with anyio.move_on_after(timeout):
            while self._unwritten and not self._writer_done.is_set():
                await self._written.wait()
        return self._unwritten == 0

    async def aclose(self, timeout: float = 1.0) -> None:  # noqa: ASYNC109
        """Stop taking events, let :meth:`run` write what is queued, end the subscribers' streams."""
        for send, _ in self._subscribers:
            send.close()
        self._subscribers = []
        if self._queue_send is None or self._queue is None:
            return
        self._queue_send.close()
        if self._running:
            with anyio.move_on_after(timeout):
                await self._writer_done.wait()
        else:
            self._queue.close()


def _append(path: Path, text: str) -> tuple[bool, tuple[int, int]]:
    """Append ``text`` whole or not at all; returns whether the file existed before, and its (device, inode).
    Opened per batch, so logrotate's move-and-recreate needs no signal to us."""
    return append_lines(path, text)
