"""The apartments' wrong-code lockouts, kept in the state directory so a restart does not forgive them.

Without this a restart (a crash, the watchdog, a power cut, ``systemctl restart``) gave every apartment its
full count of tries back, and a lockout in force was lifted. The file holds no digit: per apartment, the
wrong codes in a row and until when (wall-clock, since the monotonic clock does not survive a reboot).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

from daemon.flow.codes import Lockout

__all__ = ["LOCKOUTS_FILE", "load_lockouts", "save_lockouts"]

log = logging.getLogger("daemon.lockouts")

LOCKOUTS_FILE = "lockouts.json"
_MAX_SECONDS = 86_400.0  # the longest lockout the configuration allows: a clock jump cannot lock for longer


def load_lockouts(path: Path) -> dict[str, Lockout]:
    """The lockouts saved at ``path``, as monotonic-clock :class:`Lockout` values. Blocking; never raises: an
    unreadable or damaged file is logged and read as empty (the counts start again, as before this file)."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("lockouts %s: unreadable (%s); wrong-code counts start again", path, exc)
        return {}
    out: dict[str, Lockout] = {}
    now_wall, now = time.time(), time.monotonic()
    for name, entry in saved.items() if isinstance(saved, dict) else ():
        try:
            wrong, until = int(entry["wrong"]), float(entry["until"])
        except (KeyError, TypeError, ValueError):
            continue
        if not math.isfinite(until) or wrong < 0:
            continue
        left = min(max(until - now_wall, 0.0), _MAX_SECONDS)
        out[str(name)] = Lockout(wrong_in_a_row=min(wrong, 1000), locked_until=now + left if left else 0.0)
    return out


def save_lockouts(path: Path, lockouts: dict[str, Lockout]) -> None:
    """Write ``lockouts`` atomically (a temp file renamed over the old one). Blocking; raises ``OSError``."""
    now_wall, now = time.time(), time.monotonic()
    data = {
        name: {"wrong": lockout.wrong_in_a_row, "until": now_wall + max(lockout.locked_until - now, 0.0)}
        for name, lockout in lockouts.items()
        if lockout.wrong_in_a_row or lockout.locked(now)
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
