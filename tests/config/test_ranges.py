"""Every number in the configuration has a finite, declared range: walked generically, so a new field cannot
forget one (``build`` refuses a dataclass whose numeric field declares none)."""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass
from typing import Any

import pytest

from daemon.config import Config, default_config_text
from daemon.settings_schema import NumericField, build, numeric_fields

FIELDS = numeric_fields(Config)
DEFAULT = tomllib.loads(default_config_text())
HOSTILE: list[object] = [float("nan"), float("inf"), float("-inf"), 1e300, -1, -1e-9, 10**30]


def _container(node: Any, part: str, rest: tuple[str, ...]) -> Any:
    """``node[part]``, added when the default config leaves it out (an optional section such as [mqtt] or
    [keypad]): a table, or for a list or a table of numbers one item to put the value into."""
    if part not in node:
        item: Any = 0 if len(rest) == 1 else {}
        node[part] = [item] if rest[0] == "[]" else {"x": item} if rest[0] == "*" else {}
    return node[part]


def _key(field: NumericField) -> tuple[str, dict[str, Any]]:
    """The field's key as problems name it, and a copy of the default config's data to put a value into."""
    data = copy.deepcopy(DEFAULT)
    node: Any = data
    key = ""
    path = field.path
    for i, part in enumerate(path[:-1]):
        if part == "[]":
            node, key = node[0], f"{key}[0]"
        elif part == "*":
            first = next(iter(node))
            node, key = node[first], f"{key}.{first}"
        else:
            node, key = _container(node, part, path[i + 1 :]), f"{key}.{part}" if key else part
    last = path[-1]
    if last == "[]":
        return f"{key}[0]", data
    if last == "*":
        return f"{key}.{next(iter(node))}", data
    return (f"{key}.{last}" if key else last), data


def _set(data: dict[str, Any], field: NumericField, value: object) -> None:
    node: Any = data
    path = field.path
    for i, part in enumerate(path[:-1]):
        node = (
            node[0]
            if part == "[]"
            else next(iter(node.values()))
            if part == "*"
            else _container(node, part, path[i + 1 :])
        )
    last = path[-1]
    if last == "[]":
        node[0] = value
    elif last == "*":
        node[next(iter(node))] = value
    else:
        node[last] = value


def test_the_walk_reaches_every_section() -> None:
    paths = {".".join(f.path) for f in FIELDS}
    expected = {
        "buttons.[].pin",
        "buttons.[].holdoff_ms",
        "relay.pulse_seconds",
        "exit_button.min_press_ms",
        "door_contact.held_open_seconds",
        "tamper.block_seconds",
        "leds.*.pin",
        "audio.volume",
        "sip.port",
        "sip.rtp_port_range",
        "sip.account.register_expiry",
        "sip.media_timeout_seconds",
        "timing.ring_timeout_seconds",
        "timing.visit_deadline_seconds",
        "timing.lockout_seconds",
        "timing.wrong_code_limit",
    }
    assert expected <= paths, expected - paths
    assert len(FIELDS) >= 25


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: ".".join(f.path))
def test_every_number_has_a_finite_range(field: NumericField) -> None:
    assert field.bounds is not None, f"{'.'.join(field.path)} declares no Range"
    assert 0 <= field.bounds.low <= field.bounds.high < 1e7


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
@pytest.mark.parametrize("field", FIELDS, ids=lambda f: ".".join(f.path))
def test_every_number_refuses_nan_infinities_huge_and_negative_values(field: NumericField, value: object) -> None:
    key, data = _key(field)
    _set(data, field, value)
    problems: list[str] = []
    assert build(Config, data, problems) is None
    assert any(p.startswith(f"{key}: ") for p in problems), (key, problems)


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: ".".join(f.path))
def test_the_ends_of_every_range_are_accepted_by_the_range_check(field: NumericField) -> None:
    assert field.bounds is not None
    for value in (field.bounds.low, field.bounds.high):
        key, data = _key(field)
        _set(data, field, field.kind(value))
        problems: list[str] = []
        build(Config, data, problems)
        # Cross-field checks (a pin used twice, a deadline shorter than the ring) may still object.
        assert not [p for p in problems if p.startswith(f"{key}: ") and " out of range " in p], problems


def test_a_dataclass_with_an_unranged_number_is_refused_before_reading_anything() -> None:
    @dataclass(frozen=True)
    class Forgetful:
        seconds: float = 1.0

    with pytest.raises(TypeError, match="numeric settings without a Range: seconds"):
        build(Forgetful, {}, [])


def test_settings_built_in_code_report_their_ranges_too() -> None:
    """``problems()`` of an instance made without the loader (tests, the demo) names the same ranges."""
    from daemon.config import ButtonConfig, SipConfig, TimingConfig

    assert SipConfig(media_timeout_seconds=-1).problems() == [
        "media_timeout_seconds: -1 out of range 0..3600 seconds (0: never)"
    ]
    assert TimingConfig(lockout_seconds=float("inf")).problems() == [
        "lockout_seconds: inf out of range 1..86400 seconds"
    ]
    assert ButtonConfig(name="a", pin=17, holdoff_ms=float("nan")).problems() == [
        "holdoff_ms: nan out of range 0..60000 ms"
    ]
    assert SipConfig().problems() == TimingConfig().problems() == []
