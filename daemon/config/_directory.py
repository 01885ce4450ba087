"""The directory file: apartments in CSV (``number,name,residents,codes,strategy,fallback``), as 2N and Akuvox
panels import and export them, for buildings with hundreds or thousands of apartments.

Each row becomes the same :class:`~daemon.config.Apartment` as an ``[[apartments]]`` table, built by the same
schema, so every rule applies (SIP URIs, codes, strategy); every problem names ``file:line``. ``residents`` and
``codes`` hold several values separated by spaces. Lines starting with ``#`` and blank lines are skipped. The
merged configuration is checked again as a whole (a number in both the file and ``[[apartments]]`` is an error).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.config._visit import Apartment
from daemon.errors import ConfigError
from daemon.settings_schema import build

if TYPE_CHECKING:
    from daemon.config._model import Config

__all__ = ["COLUMNS", "MAX_DIRECTORY_BYTES", "directory_csv", "read_directory", "with_directory"]

COLUMNS = ("number", "name", "residents", "codes", "strategy", "fallback")
REQUIRED = ("number", "residents")
MAX_DIRECTORY_BYTES = 16 << 20  # 10,000 apartments with three residents each is about 1.5 MB
_INDEX = re.compile(r"^apartments\[(\d+)\]")


def _rows(text: str) -> Iterable[tuple[int, list[str]]]:
    """(line number, fields) of each row that is not blank or a comment."""
    reader = csv.reader(io.StringIO(text))
    for fields in reader:
        if not fields or not "".join(fields).strip() or fields[0].lstrip().startswith("#"):
            continue
        yield reader.line_num, [f.strip() for f in fields]


def read_directory(path: Path, text: str) -> tuple[tuple[Apartment, ...], list[int]]:
    """The apartments of a directory file's ``text`` and the line each came from. Raises :class:`ConfigError`
    listing every problem as ``file:line: ...``."""
    rows = iter(_rows(text))
    header = next(rows, None)
    if header is None:
        raise ConfigError("the directory file has no header line; expected: " + ",".join(COLUMNS), str(path))
    line, names = header
    unknown = [n for n in names if n not in COLUMNS]
    missing = [n for n in REQUIRED if n not in names]
    if unknown or missing or len(set(names)) != len(names):
        raise ConfigError(
            f"{path}:{line}: the header must name the columns once each, from {', '.join(COLUMNS)} "
            f"(number and residents required); got {', '.join(names)}",
            str(path),
        )
    problems: list[str] = []
    apartments: list[Apartment] = []
    lines: list[int] = []
    for line, fields in rows:
        where = f"{path}:{line}"
        if len(fields) != len(names):
            problems.append(f"{where}: {len(fields)} field(s) for {len(names)} column(s)")
            continue
        row = dict(zip(names, fields, strict=True))
        data: dict[str, object] = {
            "name": row.get("name") or row["number"],
            "number": row["number"],
            "buttons": [],
            "residents": row["residents"].split(),
            "codes": row.get("codes", "").split(),
        }
        for key in ("strategy", "fallback"):
            if row.get(key):
                data[key] = row[key]
        found: list[str] = []
        apartment = build(Apartment, data, found)
        problems += [f"{where}: {p}" for p in found]
        if apartment is not None and not found:
            apartments.append(apartment)
            lines.append(line)
    if problems:
        raise ConfigError(problems, str(path))
    return tuple(apartments), lines


def with_directory(config: Config, text: str, path: Path, source: str) -> Config:
    """``config`` with the directory's apartments after its own, checked again as a whole; problems about a
    directory apartment name its ``file:line``."""
    own = len(config.apartments)
    apartments, lines = read_directory(path, text)
    merged = replace(config, apartments=config.apartments + apartments)

    def located(problem: str) -> str:
        match = _INDEX.match(problem)
        if match is None or int(match.group(1)) < own:
            return problem
        rest = problem[match.end() :].removeprefix(".")
        return f"{path}:{lines[int(match.group(1)) - own]}: {rest.removeprefix(': ')}"

    problems = [located(p) for p in merged.problems()]
    if not merged.apartments:
        problems.append("apartments: at least one apartment is required ([[apartments]] or the directory file)")
    if problems:
        raise ConfigError(problems, source)
    return merged


def directory_csv(apartments: Iterable[Apartment]) -> str:
    """Apartments as a directory file (a keypad number, or the name when there is none). Codes are left out:
    they are secrets and this text leaves the daemon; the file on the panel keeps them."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for apt in apartments:
        writer.writerow((apt.number, apt.name, " ".join(apt.residents), "", apt.strategy, apt.fallback))
    return out.getvalue()
