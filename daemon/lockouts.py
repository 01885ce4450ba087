"""The wrong-code and wrong-PIN lockouts, kept in the state directory so a restart does not forgive them.

Without this a restart (a crash, the watchdog, a power cut, ``systemctl restart``) gave every apartment its
full count of tries back, and a lockout in force was lifted; the keypad's PIN guard likewise. The file holds no
digit: per apartment, the wrong codes in a row and until when; for the keypad's PINs, the wrong PINs in a row and
since the last good one, the lockouts in the streak (each doubles the next) and until when. Times are
wall-clock, since the monotonic clock does not survive a reboot.

Format: ``{"apartments": {name: {"wrong", "until"}}, "keypad_pins": {"wrong", "since_good", "lockouts",
"until"}}``; a file of the first format (the apartments' map alone) is still read.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.access import PinGuard
from daemon.flow.codes import Lockout

__all__ = ["LOCKOUTS_FILE", "SavedLockouts", "load_lockouts", "save_lockouts"]

log = logging.getLogger("daemon.lockouts")

LOCKOUTS_FILE = "lockouts.json"
_MAX_SECONDS = 86_400.0  # the longest lockout the configuration allows: a clock jump cannot lock for longer
_MAX_COUNT = 1000  # a damaged or edited file cannot make a count absurd


@dataclass(frozen=True)
class SavedLockouts:
    """What survives a restart: the apartments' code lockouts and the keypad's panel-wide PIN guard."""

    apartments: dict[str, Lockout] = field(default_factory=dict)
    pins: PinGuard = field(default_factory=PinGuard)


def load_lockouts(path: Path) -> SavedLockouts:
    """The lockouts saved at ``path``, with monotonic-clock deadlines. Blocking; never raises: an unreadable or
    damaged file is logged and read as empty (the counts start again, as before this file)."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return SavedLockouts()
    except (OSError, ValueError) as exc:
        log.warning("lockouts %s: unreadable (%s); wrong-code counts start again", path, exc)
        return SavedLockouts()
    if not isinstance(saved, dict):
        return SavedLockouts()
    clock = _Clock()
    apartments_saved = saved.get("apartments") if "apartments" in saved else saved  # the first format: a bare map
    apartments: dict[str, Lockout] = {}
    for name, entry in apartments_saved.items() if isinstance(apartments_saved, dict) else ():
        try:
            apartments[str(name)] = Lockout(wrong_in_a_row=_count(entry, "wrong"), locked_until=clock.local(entry))
        except (KeyError, TypeError, ValueError):
            continue
    pins = PinGuard()
    entry = saved.get("keypad_pins") if "apartments" in saved else None
    if entry is not None:
        try:
            counts = (_count(entry, "wrong"), _count(entry, "since_good"), _count(entry, "lockouts"))
            pins = PinGuard(*counts, locked_until=clock.local(entry))
        except (KeyError, TypeError, ValueError):
            log.warning("lockouts %s: the keypad PINs' entry is damaged; their counts start again", path)
    return SavedLockouts(apartments, pins)


def save_lockouts(path: Path, lockouts: SavedLockouts) -> None:
    """Write ``lockouts`` atomically (a temp file renamed over the old one). Blocking; raises ``OSError``."""
    clock = _Clock()
    data: dict[str, Any] = {
        "apartments": {
            name: {"wrong": lockout.wrong_in_a_row, "until": clock.wall(lockout.locked_until)}
            for name, lockout in lockouts.apartments.items()
            if lockout.wrong_in_a_row or lockout.locked(clock.now)
        }
    }
    pins = lockouts.pins
    if pins != PinGuard():
        data["keypad_pins"] = {
            "wrong": pins.wrong_in_a_row,
            "since_good": pins.wrong_since_good,
            "lockouts": pins.lockouts,
            "until": clock.wall(pins.locked_until),
        }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _count(entry: Any, key: str) -> int:
    value = int(entry[key])
    if value < 0:
        raise ValueError(f"{key} is negative")
    return min(value, _MAX_COUNT)


class _Clock:
    """Converts between this boot's monotonic deadlines and wall-clock ones, read once per load or save."""

    def __init__(self) -> None:
        self.now_wall, self.now = time.time(), time.monotonic()

    def wall(self, deadline: float) -> float:
        return self.now_wall + max(deadline - self.now, 0.0)

    def local(self, entry: Any) -> float:
        """The entry's ``until`` as a monotonic deadline (0.0: none), never further off than the longest lockout."""
        until = float(entry["until"])
        if not math.isfinite(until):
            raise ValueError("until is not finite")
        left = min(max(until - self.now_wall, 0.0), _MAX_SECONDS)
        return self.now + left if left else 0.0
