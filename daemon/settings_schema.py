"""Turn parsed TOML into frozen dataclasses, collecting *every* problem with its key path.

Generic over the dataclasses in :mod:`daemon.config`: field types drive the checks (bool is strict, an
int is accepted for a float, ``Literal`` lists what is accepted, tuples check each item), unknown keys are
refused with the accepted ones listed. A dataclass may define ``problems(self) -> list[str]`` for checks
across its own fields; those are reported with its key path.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

__all__ = ["build"]

T = TypeVar("T")

_MISSING = object()


def build(cls: type[T], data: object, problems: list[str], path: str = "") -> T | None:
    """Build ``cls`` from ``data``; append problems (``key: what is wrong; accepted: ...``) to ``problems``."""
    value = _convert(cls, data, problems, path)
    return typing.cast("T | None", value)


def _where(path: str) -> str:
    return path or "<top level>"


def _convert(tp: Any, data: object, problems: list[str], path: str) -> object:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _dataclass(tp, data, problems, path)
    if origin is Literal:
        accepted = get_args(tp)
        if data in accepted and type(data) is type(accepted[0]):
            return data
        problems.append(f"{_where(path)}: {data!r} is not accepted; accepted: {', '.join(map(repr, accepted))}")
        return _MISSING
    if origin in (types.UnionType, typing.Union):
        options = get_args(tp)
        if data is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], data, problems, path)
        for option in inner:
            trial: list[str] = []
            value = _convert(option, data, trial, path)
            if not trial:
                return value
        problems.append(f"{_where(path)}: {data!r} is not any of {tp}")
        return _MISSING
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(data, list | tuple):
            problems.append(f"{_where(path)}: expected a list, got {type(data).__name__} {data!r}")
            return _MISSING
        item_tp = args[0]
        items = [_convert(item_tp, item, problems, f"{path}[{i}]") for i, item in enumerate(data)]
        return tuple(items)
    if origin is dict:
        _key_tp, val_tp = get_args(tp)
        if not isinstance(data, Mapping):
            problems.append(f"{_where(path)}: expected a table, got {type(data).__name__}")
            return _MISSING
        return {str(k): _convert(val_tp, v, problems, f"{path}.{k}") for k, v in data.items()}
    return _scalar(tp, data, problems, path)


def _scalar(tp: Any, data: object, problems: list[str], path: str) -> object:
    if tp is bool:
        if isinstance(data, bool):
            return data
        problems.append(f"{_where(path)}: expected true or false, got {data!r}")
        return _MISSING
    if tp is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
        problems.append(f"{_where(path)}: expected a whole number, got {data!r}")
        return _MISSING
    if tp is float:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return float(data)
        problems.append(f"{_where(path)}: expected a number, got {data!r}")
        return _MISSING
    if tp is str:
        if isinstance(data, str):
            return data
        problems.append(f"{_where(path)}: expected a string, got {data!r}")
        return _MISSING
    raise TypeError(f"settings_schema: unsupported field type {tp!r} at {path}")


def _dataclass(cls: type[Any], data: object, problems: list[str], path: str) -> object:
    if not isinstance(data, Mapping):
        problems.append(f"{_where(path)}: expected a table, got {type(data).__name__} {data!r}")
        return _MISSING
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    for key in unknown:
        problems.append(f"{_join(path, key)}: unknown key; accepted keys here: {', '.join(sorted(fields))}")
    kwargs: dict[str, object] = {}
    before = len(problems)
    for name, field in fields.items():
        if name in data:
            value = _convert(hints[name], data[name], problems, _join(path, name))
            if value is not _MISSING:
                kwargs[name] = value
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            problems.append(f"{_join(path, name)}: required key is missing")
    if len(problems) > before:
        return _MISSING
    instance = cls(**kwargs)
    check = getattr(instance, "problems", None)
    if callable(check):
        problems.extend(f"{_where(path)}: {p}" for p in check())
    return instance


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
