"""The app's side of the control socket: each request mapped onto :class:`daemon.facade.AppFacade`.

Nothing else: this module never reaches into the app's parts (relay, visits, SIP engine). What a command
does, and what it logs, is the facade's business; this only turns typed requests into facade calls and
facade results into the JSON the protocol carries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import assert_never

from daemon.control.protocol import (
    CommandRequest,
    DialRequest,
    DirectoryRequest,
    HangupRequest,
    HistoryRequest,
    OpenRequest,
    Peer,
    PressRequest,
    ReloadRequest,
    SelftestRequest,
    StatusRequest,
    shown,
)
from daemon.errors import ControlError
from daemon.facade import AppFacade

__all__ = ["AppControl"]

UNKNOWN_BUTTON = "unknown button"  # PressResult.result for a name the app does not know


class AppControl:
    """Implements :class:`daemon.control.protocol.ControlHandler` over the app's facade."""

    def __init__(self, app: AppFacade) -> None:
        self._app = app

    async def execute(self, request: CommandRequest, peer: Peer) -> object:
        match request:
            case StatusRequest():
                return self._app.status()
            case PressRequest(button=button):
                return self._press(button, peer)
            case OpenRequest(door=door):
                opened = self._app.open_door(door, by=str(peer))
                return {"opened": opened.opened, "reason": opened.reason}
            case DialRequest(uri=uri):
                return {"dialed": uri, "call": await self._app.dial(uri)}  # SipError: a "failed" reply
            case HangupRequest():
                return await self._app.hangup()
            case HistoryRequest(limit=limit):
                return await self._app.history(limit)
            case SelftestRequest():
                return [{"check": r.check, "passed": r.passed, "detail": r.detail} for r in await self._app.selftest()]
            case ReloadRequest():
                return (await self._app.reload()).as_dict()
            case DirectoryRequest():
                text = self._app.directory_csv()
                return {"apartments": text.count("\n") - 1, "csv": text}
            case _:
                assert_never(request)

    def _press(self, button: str, peer: Peer) -> dict[str, object]:
        known = self._app.button_names()
        if button not in known:
            raise ControlError(f"no button named {shown(button)}; known: {', '.join(known) or 'none'}")
        pressed = self._app.press(button, source=str(peer))
        if pressed.result == UNKNOWN_BUTTON:  # the configuration changed (reload) between the two calls
            raise ControlError(f"no button named {shown(button)}")
        return {"button": button, "result": pressed.result, "visit": pressed.visit}

    def events(self) -> AbstractAsyncContextManager[AsyncIterator[dict[str, object]]]:
        return self._app.events()
