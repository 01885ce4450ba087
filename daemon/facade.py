"""What the outside (control socket, demo, MQTT later) may ask of the running app, and nothing more.

Adapters call these methods; they never reach into the app's parts (``app.panel.relay``, ``app.visits``).
The app (:class:`daemon.app.IntercomApp`) implements :class:`AppFacade`; control tests pass a fake.
Every method logs what it did itself (BUTTON_PRESSED, DOOR_OPEN / DOOR_OPEN_REFUSED), so no caller can forget.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

__all__ = ["AppFacade", "OpenResult", "PressResult", "ReloadResult", "SelftestRow"]


@dataclass(frozen=True)
class PressResult:
    result: str  # what was done with it: "started", "queued", "second press", "unknown button", "refused: ..."
    visit: str  # the visit it belongs to, "-" when none


@dataclass(frozen=True)
class OpenResult:
    opened: bool  # True only when the relay really energized
    reason: str = ""  # why not, when not: "relay blocked by tamper", "relay fault", "unknown door ..."


@dataclass(frozen=True)
class ReloadResult:
    reloaded: bool
    error: str = ""  # why it was refused (reloaded is False)
    applied: tuple[str, ...] = ()  # settings (dotted keys) now in force
    restart_needed: tuple[str, ...] = ()  # settings that changed but only take effect after a restart
    unchanged: bool = False  # the file had no change at all

    def as_dict(self) -> dict[str, object]:
        return {
            "reloaded": self.reloaded,
            "error": self.error,
            "applied": list(self.applied),
            "restart_needed": list(self.restart_needed),
            "unchanged": self.unchanged,
        }


@dataclass(frozen=True)
class SelftestRow:
    check: str
    passed: bool
    detail: str = ""


class AppFacade(Protocol):
    """The running daemon as its adapters see it."""

    def button_names(self) -> list[str]: ...
    def press(self, button: str, *, source: str) -> PressResult: ...
    def open_door(self, door: str | None = None, *, by: str) -> OpenResult: ...
    async def dial(self, uri: str) -> str: ...  # a manual call; returns its id; raises SipError
    async def hangup(self) -> dict[str, object]: ...  # ends the visit in progress and manual calls
    def status(self) -> dict[str, object]: ...
    async def history(self, limit: int) -> list[dict[str, object]]: ...
    def events(self) -> AbstractAsyncContextManager[AsyncIterator[dict[str, object]]]: ...
    async def selftest(self) -> list[SelftestRow]: ...
    async def reload(self) -> ReloadResult: ...
    def directory_csv(self) -> str: ...  # every apartment as a directory file (CSV), codes left out
    async def wait_visits(self, count: int) -> None: ...  # until `count` visits ended and were recorded
