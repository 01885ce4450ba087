"""One visit's SIP call handles <-> its leg indexes. The router makes one per visit and translates SIP
events through it; the runner binds a handle when its dial succeeds and looks it up to act on the call."""

from __future__ import annotations

from daemon.sip.types import CallHandle

__all__ = ["LegTable"]


class LegTable:
    def __init__(self) -> None:
        self._leg_of: dict[CallHandle, int] = {}
        self._handle_of: dict[int, CallHandle] = {}

    def bind(self, leg: int, handle: CallHandle) -> None:
        self._leg_of[handle] = leg
        self._handle_of[leg] = handle

    def leg_of(self, handle: CallHandle) -> int | None:
        return self._leg_of.get(handle)

    def handle_of(self, leg: int) -> CallHandle | None:
        return self._handle_of.get(leg)

    def handles(self) -> list[CallHandle]:
        return list(self._leg_of)
