"""What ``intercomctl`` prints for people: key/value lines, tables that fit a terminal, times in local time.

Every function takes the output stream (and for times, the zone: None is the machine's local zone), so
tests check the exact text without touching the process's clock or stdout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, TextIO

__all__ = [
    "HISTORY_COLUMNS",
    "local_time",
    "print_event",
    "print_history",
    "print_mapping",
    "print_reload",
    "print_selftest",
    "print_table",
]

ELLIPSIS = "…"


def text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def fit(value: str, width: int) -> str:
    return value if len(value) <= width else value[: width - 1] + ELLIPSIS


def local_time(value: Any, tz: tzinfo | None = None, *, seconds: bool = True) -> str:
    """An ISO timestamp from the daemon, in ``tz`` (None: this machine's zone). Naive ones are UTC (history)."""
    if not isinstance(value, str) or not value:
        return text(value)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return value  # not a timestamp after all: show it as it came
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def duration(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return text(value)
    total = round(value)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    return f"{total // 3600}h{total % 3600 // 60:02d}m"


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        yield prefix, ", ".join(text(v) for v in value) or "-"
    else:
        yield prefix, text(value)


def print_mapping(result: Any, out: TextIO) -> None:
    """``key: value`` lines, values aligned; nested objects as dotted keys."""
    if not isinstance(result, dict):
        out.write(f"{text(result)}\n")
        return
    rows = list(_flatten(result))
    width = max((len(k) for k, _ in rows), default=0) + 1
    for key, value in rows:
        out.write(f"{key + ':':<{width}} {value}\n")


def print_table(header: Sequence[str], cells: Sequence[Sequence[str]], out: TextIO) -> None:
    """Columns as wide as their widest cell, two spaces apart, no trailing blanks."""
    if not cells:
        out.write("(none)\n")
        return
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    for line in (header, *cells):
        out.write("  ".join(f"{cell:<{w}}" for cell, w in zip(line, widths, strict=True)).rstrip() + "\n")


# --- history ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    title: str
    key: str
    width: int  # the most it may take: the compact table stays within 80 columns


def _answered_by(value: Any) -> str:
    shown = text(value) if value else "-"
    for scheme in ("sip:", "sips:"):
        shown = shown.removeprefix(scheme)
    return shown


# 16 + 9 + 14 + 18 + 4 + 8 = 69 characters of cells, plus 5 gaps of 2: 79.
HISTORY_COLUMNS = (
    Column("TIME", "started_at", 16),
    Column("APARTMENT", "apartment", 9),
    Column("OUTCOME", "outcome", 14),
    Column("ANSWERED BY", "answered_by", 18),
    Column("DOOR", "door_opened", 4),
    Column("DURATION", "duration_seconds", 8),
)


def _compact_cell(column: Column, row: Mapping[str, Any], tz: tzinfo | None) -> str:
    value = row.get(column.key)
    match column.key:
        case "started_at":
            shown = local_time(value, tz, seconds=False)
        case "answered_by":
            shown = _answered_by(value)
        case "duration_seconds":
            shown = duration(value)
        case _:
            shown = text(value)
    return fit(shown, column.width)


def print_history(rows: list[dict[str, Any]], out: TextIO, *, wide: bool = False, tz: tzinfo | None = None) -> None:
    """Compact: the six columns a person scans for, within 80 columns. Wide: every field, times in full."""
    if not wide:
        header = [c.title for c in HISTORY_COLUMNS]
        print_table(header, [[_compact_cell(c, row, tz) for c in HISTORY_COLUMNS] for row in rows], out)
        return
    keys = list(dict.fromkeys(k for row in rows for k in row))  # first-seen order across rows
    cells = [[local_time(row.get(k), tz) if k.endswith("_at") else text(row.get(k)) for k in keys] for row in rows]
    print_table([k.upper() for k in keys], cells, out)


# --- selftest, events, reload ----------------------------------------------------------------------------


def print_selftest(checks: list[dict[str, Any]], out: TextIO) -> bool:
    """PASS/FAIL table; True when every check passed."""
    cells = [["PASS" if c.get("passed") else "FAIL", text(c.get("check")), text(c.get("detail") or "")] for c in checks]
    print_table(["RESULT", "CHECK", "DETAIL"], cells, out)
    return all(c.get("passed") for c in checks)


def print_event(event: dict[str, Any], out: TextIO, tz: tzinfo | None = None) -> None:
    """``<local time> <NAME> key=value ...``: the time and the event's name first."""
    head = [local_time(event["timestamp"], tz) if "timestamp" in event else "", text(event.get("event", ""))]
    rest = [f"{k}={text(v)}" for k, v in event.items() if k not in ("timestamp", "event")]
    out.write(" ".join(part for part in (*head, *rest) if part) + "\n")


def print_reload(result: dict[str, Any], out: TextIO) -> None:
    """What a reload did: refused (and why), nothing changed, or what is applied and what waits for a restart."""
    if not result.get("reloaded"):
        out.write(f"reload refused: {text(result.get('error') or 'no reason given')}\n")
        out.write("the configuration in force is unchanged\n")
        return
    if result.get("unchanged"):
        out.write("reloaded: the configuration file has not changed\n")
        return
    applied = result.get("applied") or []
    restart = result.get("restart_needed") or []
    out.write("reloaded\n")
    out.write(f"applied now:        {', '.join(map(text, applied)) or '-'}\n")
    out.write(f"needs a restart:    {', '.join(map(text, restart)) or '-'}\n")
    if restart:
        out.write("(systemctl restart intercom applies them; a visit in progress is then cut short)\n")
