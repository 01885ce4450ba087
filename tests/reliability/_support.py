"""Helpers for the reliability and soak suites: configs with a registrar, log capture, resource figures."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from daemon.config import Apartment, Config, SipAccountConfig, default_config_text, parse_config
from tests.scenario.conftest import Panel, scenario_config

__all__ = [
    "LogCapture",
    "apartment",
    "capture_logs",
    "config_with",
    "history_rows",
    "played",
    "resources",
    "with_registrar",
]


def apartment(
    name: str, *residents: str, codes: tuple[str, ...] = ("1",), buttons: tuple[str, ...] = ("101",), **kw: Any
) -> Apartment:
    return Apartment(name=name, buttons=buttons, residents=residents, codes=codes, **kw)


def config_with(
    tmp_path: Path,
    cache: Path,
    apartments: list[Apartment],
    *,
    sip: dict[str, Any] | None = None,
    relay: dict[str, Any] | None = None,
    audio: dict[str, Any] | None = None,
    inbound_codes: tuple[str, ...] | None = None,
    **timing: Any,
) -> Config:
    config = scenario_config(tmp_path, cache, apartments, **timing)
    # Both default buttons: "101" on GPIO17, "concierge" on GPIO18.
    config = replace(config, buttons=parse_config(default_config_text()).buttons)
    if sip:
        config = replace(config, sip=replace(config.sip, **sip))
    if relay:
        config = replace(config, relay=replace(config.relay, **relay))
    if audio:
        config = replace(config, audio=replace(config.audio, **audio))
    if inbound_codes is not None:
        config = replace(config, inbound_codes=inbound_codes)
    return config


def with_registrar(config: Config, registrar: str, *, user: str = "panel", password: str = "s3cret") -> Config:
    host = registrar.removeprefix("sip:")
    account = SipAccountConfig(uri=f"sip:{user}@{host}", registrar=registrar, username=user, password=password)
    return replace(config, sip=replace(config.sip, account=account))


def played(panel: Panel) -> list[str]:
    """The prompts the visitor heard, in order (from events.jsonl)."""
    return [e["text"] for e in panel.events() if e["event"] == "PLAYBACK_START"]


def history_rows(state_dir: str | Path) -> int:
    with sqlite3.connect(Path(state_dir) / "history.sqlite3") as db:
        return int(db.execute("SELECT count(*) FROM visits").fetchone()[0])


class LogCapture(logging.Handler):
    """Every record formatted, at DEBUG and up: what the journal would hold."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def matching(self, needle: str, level: str | None = None) -> list[str]:
        return [x for x in self.lines if needle in x and (level is None or x.startswith(level))]


@contextmanager
def capture_logs() -> Iterator[LogCapture]:
    root = logging.getLogger()
    handler = LogCapture()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


def resources() -> dict[str, int]:
    """Threads, open fds and RSS (kB) of this process."""
    rss = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return {"threads": threading.active_count(), "fds": len(os.listdir("/proc/self/fd")), "rss_kb": rss}
