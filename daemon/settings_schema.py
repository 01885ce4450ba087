"""Turn parsed TOML into frozen dataclasses, collecting *every* problem with its key path.

Generic over the configuration's dataclasses: field types drive the checks (bool is strict, an int is accepted
for a float, ``Literal`` lists what is accepted, tuples check each item), unknown keys are refused with the
accepted ones listed. Every number must be finite and inside the :class:`~hw.settings.Range` declared next to
its field (``Annotated[float, Range(...)]``); a dataclass with a numeric field that declares no range is a
programming error, refused before any file is read. Strings may not hold control characters (a NUL in a path
only fails later, deep inside ``os``). A dataclass may define ``problems(self) -> list[str]`` for checks across
its own fields; those are reported with its key path.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal, NamedTuple, TypeVar, get_args, get_origin, get_type_hints

from hw.settings import Range

__all__ = ["NumericField", "build", "numeric_fields"]

T = TypeVar("T")

_MISSING = object()
_RANGES_CHECKED: set[type[Any]] = set()  # dataclasses whose every number declares a Range
# Tab and newline are fine (multi-line prompt texts). Refused: C0 and C1 controls (ESC sequences repaint a
# terminal), the line and paragraph separators (a log line split in two), and Unicode's bidirectional
# formatting marks, embeddings, overrides and isolates: a name holding U+202E prints reversed in logs,
# `intercomctl` and Home Assistant, so "101" can show as another apartment ("Trojan Source").
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_SECRET = re.compile(r"code|password|pin_hash", re.IGNORECASE)  # never echo these values back in a problem


class NumericField(NamedTuple):
    """One numeric setting: where it sits (``"[]"`` one item of a list, ``"*"`` any table key), its type, range."""

    path: tuple[str, ...]
    kind: type
    bounds: Range | None


def build(cls: type[T], data: object, problems: list[str], path: str = "") -> T | None:
    """Build ``cls`` from ``data``; append problems (``key: what is wrong; accepted: ...``) to ``problems``."""
    _require_ranges(cls)
    value = _convert(cls, data, problems, path)
    return typing.cast("T | None", None if value is _MISSING else value)


def numeric_fields(cls: type[Any]) -> list[NumericField]:
    """Every int/float setting reachable from the dataclass ``cls``, with its declared range (None: missing)."""
    return list(_walk(cls, ()))


def _require_ranges(cls: type[Any]) -> None:
    if cls in _RANGES_CHECKED:
        return
    missing = [".".join(f.path) for f in _walk(cls, ()) if f.bounds is None]
    if missing:
        raise TypeError(f"settings_schema: numeric settings without a Range: {', '.join(missing)}")
    _RANGES_CHECKED.add(cls)


def _walk(tp: Any, path: tuple[str, ...], bounds: Range | None = None) -> Iterator[NumericField]:
    origin = get_origin(tp)
    if origin is Annotated:
        inner, *extras = get_args(tp)
        found = next((e for e in extras if isinstance(e, Range)), None)
        yield from _walk(inner, path, found)
    elif dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = _hints(tp)
        for f in dataclasses.fields(tp):
            if f.init:
                yield from _walk(hints[f.name], (*path, f.name))
    elif origin in (types.UnionType, typing.Union):
        for option in get_args(tp):
            yield from _walk(option, path, bounds)
    elif origin is tuple:
        yield from _walk(get_args(tp)[0], (*path, "[]"), bounds)
    elif origin is dict:
        yield from _walk(get_args(tp)[1], (*path, "*"), bounds)
    elif tp in (int, float):
        yield NumericField(path, tp, bounds)


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    """A dataclass's resolved field types, once per class: resolving them evaluates every annotation string, which
    was most of the cost of building one apartment (a directory builds thousands)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = get_type_hints(cls, include_extras=True)
    return hints


def _where(path: str) -> str:
    return path or "<top level>"


def _show(path: str, data: object) -> str:
    """The value as a problem may quote it: door codes and passwords only by their type."""
    return f"a value of type {type(data).__name__}" if _SECRET.search(path) else repr(data)


def _convert(tp: Any, data: object, problems: list[str], path: str, bounds: Range | None = None) -> object:
    origin = get_origin(tp)
    if origin is Annotated:
        inner, *extras = get_args(tp)
        return _convert(inner, data, problems, path, next((e for e in extras if isinstance(e, Range)), bounds))
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _dataclass(tp, data, problems, path)
    if origin is Literal:
        accepted = get_args(tp)
        if data in accepted and type(data) is type(accepted[0]):
            return data
        problems.append(f"{_where(path)}: {data!r} is not accepted; accepted: {', '.join(map(repr, accepted))}")
        return _MISSING
    if origin in (types.UnionType, typing.Union):
        return _union(tp, data, problems, path, bounds)
    if origin is tuple:
        if not isinstance(data, list | tuple):
            problems.append(f"{_where(path)}: expected a list, got {type(data).__name__} {_show(path, data)}")
            return _MISSING
        item_tp = get_args(tp)[0]
        items = [_convert(item_tp, item, problems, f"{path}[{i}]", bounds) for i, item in enumerate(data)]
        return tuple(items)
    if origin is dict:
        _key_tp, val_tp = get_args(tp)
        if not isinstance(data, Mapping):
            problems.append(f"{_where(path)}: expected a table, got {type(data).__name__}")
            return _MISSING
        return {str(k): _convert(val_tp, v, problems, f"{path}.{k}", bounds) for k, v in data.items()}
    return _scalar(tp, data, problems, path, bounds)


def _union(tp: Any, data: object, problems: list[str], path: str, bounds: Range | None) -> object:
    options = get_args(tp)
    if data is None and type(None) in options:
        return None
    inner = [o for o in options if o is not type(None)]
    if len(inner) == 1:
        return _convert(inner[0], data, problems, path, bounds)
    for option in inner:
        trial: list[str] = []
        value = _convert(option, data, trial, path, bounds)
        if not trial:
            return value
    problems.append(f"{_where(path)}: {_show(path, data)} is not any of {tp}")
    return _MISSING


def _scalar(tp: Any, data: object, problems: list[str], path: str, bounds: Range | None) -> object:
    if tp is bool:
        if isinstance(data, bool):
            return data
        problems.append(f"{_where(path)}: expected true or false, got {_show(path, data)}")
        return _MISSING
    if tp is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return _in_range(data, bounds, problems, path)
        problems.append(f"{_where(path)}: expected a whole number, got {_show(path, data)}")
        return _MISSING
    if tp is float:
        if isinstance(data, int | float) and not isinstance(data, bool):
            if isinstance(data, float) and not math.isfinite(data):
                problems.append(f"{_where(path)}: {data} is not a finite number; accepted: {_accepted(bounds)}")
                return _MISSING
            return _in_range(data, bounds, problems, path, as_float=True)
        problems.append(f"{_where(path)}: expected a number, got {_show(path, data)}")
        return _MISSING
    if tp is str:
        if not isinstance(data, str):
            problems.append(f"{_where(path)}: expected a string, got {_show(path, data)}")
            return _MISSING
        if _CONTROL.search(data):
            problems.append(
                f"{_where(path)}: contains a control or bidirectional-formatting character "
                f"(NUL, ESC, CR, U+202E, ...) at position {_CONTROL.search(data).start()}; remove it"  # type: ignore[union-attr]
            )
            return _MISSING
        return data
    raise TypeError(f"settings_schema: unsupported field type {tp!r} at {path}")


def _accepted(bounds: Range | None) -> str:
    return bounds.describe() if bounds is not None else "a finite number"


def _in_range(
    value: int | float, bounds: Range | None, problems: list[str], path: str, *, as_float: bool = False
) -> object:
    if bounds is None:  # only reachable for fields outside any dataclass (build() refuses such a dataclass)
        raise TypeError(f"settings_schema: {path} is a number without a Range")
    # Compare before converting: float() of a huge TOML integer (1e400 written out) raises OverflowError.
    if not bounds.low <= value <= bounds.high:
        exact = str(value) if abs(value) < 10**15 else "a huge number"  # not 400 digits of a pasted number
        shown = f"{value:g}" if isinstance(value, float) else exact
        problems.append(f"{_where(path)}: {shown} out of range {bounds.describe()}")
        return _MISSING
    return float(value) if as_float else value


def _dataclass(cls: type[Any], data: object, problems: list[str], path: str) -> object:
    if not isinstance(data, Mapping):
        problems.append(f"{_where(path)}: expected a table, got {type(data).__name__} {_show(path, data)}")
        return _MISSING
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    for key in unknown:
        problems.append(f"{_join(path, key)}: unknown key; accepted keys here: {', '.join(sorted(fields))}")
    kwargs: dict[str, object] = {}
    complete = not unknown
    for name, field in fields.items():
        if name in data:
            value = _convert(hints[name], data[name], problems, _join(path, name))
            if value is _MISSING or _holds_missing(value):
                complete = False
            else:
                kwargs[name] = value
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            problems.append(f"{_join(path, name)}: required key is missing")
            complete = False
    if not complete:
        return _MISSING
    instance = cls(**kwargs)
    check = getattr(instance, "problems", None)
    if callable(check):
        problems.extend(f"{path}: {p}" if path else p for p in check())
    return instance


def _holds_missing(value: object) -> bool:
    """A list or table one of whose items could not be built (its problem is already reported)."""
    if isinstance(value, tuple):
        return any(v is _MISSING for v in value)
    if isinstance(value, dict):
        return any(v is _MISSING for v in value.values())
    return False


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
