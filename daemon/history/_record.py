"""The history's row: one visit, its columns, and the two forms it is stored in (a SQLite row, a spool line)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from daemon.flow.vocabulary import Outcome
from daemon.redaction import redact_field

__all__ = [
    "COLUMNS",
    "INTERRUPTED",
    "INTERRUPTED_DETAIL",
    "IN_PROGRESS",
    "OUTCOMES",
    "SCHEMA",
    "SCHEMA_VERSION",
    "StorageHealth",
    "StorageOutcome",
    "VisitRecord",
]

# Outcomes the history itself writes: a visit being recorded, and one the daemon did not live to finish.
StorageOutcome = Literal["in_progress", "interrupted"]
IN_PROGRESS: Final[StorageOutcome] = "in_progress"
INTERRUPTED: Final[StorageOutcome] = "interrupted"
INTERRUPTED_DETAIL: Final = "the daemon stopped before the visit ended"

# The outcomes the flow produces (its vocabulary is the one list), and the history's own; others are stored as given
# (a visit is never refused a row).
OUTCOMES: Final = (*(o.value for o in Outcome), IN_PROGRESS, INTERRUPTED)

SCHEMA_VERSION: Final = 1
SCHEMA: Final = {
    1: """
        CREATE TABLE visits (
            visit TEXT PRIMARY KEY,
            apartment TEXT NOT NULL,
            button TEXT NOT NULL,
            started_at TEXT NOT NULL,
            outcome TEXT NOT NULL,
            answered_by TEXT NOT NULL DEFAULT '',
            answered_at TEXT,
            door_opened INTEGER NOT NULL DEFAULT 0,
            opened_by TEXT NOT NULL DEFAULT '',
            open_method TEXT NOT NULL DEFAULT '',
            ended_at TEXT,
            ring_seconds REAL,
            call_seconds REAL,
            duration_seconds REAL,
            failure TEXT NOT NULL DEFAULT '',
            extra TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX visits_started ON visits (started_at);
    """,
}
COLUMNS: Final = (
    "visit",
    "apartment",
    "button",
    "started_at",
    "outcome",
    "answered_by",
    "answered_at",
    "door_opened",
    "opened_by",
    "open_method",
    "ended_at",
    "ring_seconds",
    "call_seconds",
    "duration_seconds",
    "failure",
    "extra",
)


@dataclass(frozen=True)
class StorageHealth:
    """How a store is doing, for ``status`` and ``selftest``: ``ok`` is about now, ``detail`` says why and what
    happened (a file moved aside, deleted or replaced while running, records waiting or spooled)."""

    ok: bool
    detail: str


@dataclass(frozen=True)
class VisitRecord:
    """One visit. Times are timezone-aware; ``extra`` must be JSON-serializable.

    Fields of ``extra`` named like secrets (``code``, ``digits``, ...) are stored as ``*``.
    """

    visit: str
    apartment: str
    button: str
    started_at: datetime
    outcome: str
    answered_by: str = ""
    answered_at: datetime | None = None
    door_opened: bool = False
    opened_by: str = ""
    open_method: str = ""  # "dtmf", "exit_button", "control", ...
    ended_at: datetime | None = None
    ring_seconds: float | None = None
    call_seconds: float | None = None
    duration_seconds: float | None = None
    failure: str = ""  # why it did not work, for the people reading the history
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Redacted on the way in, so that no copy (the backlog shown by recent(), the spool) ever holds a secret.
        object.__setattr__(self, "extra", {k: redact_field(k, v, keypad=False) for k, v in self.extra.items()})

    @property
    def in_progress(self) -> bool:
        return self.outcome == IN_PROGRESS

    def row(self) -> tuple[object, ...]:
        """The SQLite row, in ``COLUMNS`` order."""

        def iso(t: datetime | None) -> str | None:
            # UTC, so the text sorts in time order whatever offset the caller used
            return None if t is None else t.astimezone(UTC).isoformat()

        return (
            self.visit,
            self.apartment,
            self.button,
            iso(self.started_at),
            self.outcome,
            self.answered_by,
            iso(self.answered_at),
            int(self.door_opened),
            self.opened_by,
            self.open_method,
            iso(self.ended_at),
            self.ring_seconds,
            self.call_seconds,
            self.duration_seconds,
            self.failure,
            json.dumps(dict(self.extra), ensure_ascii=False, sort_keys=True, default=str),
        )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> VisitRecord:
        v = dict(zip(COLUMNS, row, strict=True))

        def when(key: str) -> datetime | None:
            return None if v[key] is None else datetime.fromisoformat(v[key])

        started = when("started_at")
        assert started is not None  # NOT NULL in the schema
        return cls(
            v["visit"],
            v["apartment"],
            v["button"],
            started,
            v["outcome"],
            v["answered_by"],
            when("answered_at"),
            bool(v["door_opened"]),
            v["opened_by"],
            v["open_method"],
            when("ended_at"),
            v["ring_seconds"],
            v["call_seconds"],
            v["duration_seconds"],
            v["failure"],
            json.loads(v["extra"]),
        )

    def spool_line(self) -> str:
        """One line of the spool file (JSON, the row's columns by name)."""
        return json.dumps(dict(zip(COLUMNS, self.row(), strict=True)), ensure_ascii=False)

    @classmethod
    def from_spool_line(cls, line: str) -> VisitRecord:
        """Raises ``ValueError`` (``json.JSONDecodeError`` included) or ``KeyError`` for a line that is not one."""
        fields = json.loads(line)
        if not isinstance(fields, dict):
            raise TypeError("not a JSON object")
        return cls.from_row(tuple(fields[c] for c in COLUMNS))
