"""The app's side of the control socket: each command mapped onto the app's facade.

(Replaced by the ``daemon/control/`` package at merge; kept as a thin shim over :class:`AppFacade`.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

from daemon.errors import ControlError, SipError
from daemon.facade import AppFacade

__all__ = ["AppControl"]


class AppControl:
    """Implements :class:`daemon.control.ControlHandler` over an :class:`~daemon.facade.AppFacade`."""

    def __init__(self, app: AppFacade) -> None:
        self._app = app

    async def status(self) -> dict[str, Any]:
        return self._app.status()

    async def press(self, button: str) -> dict[str, Any]:
        if button not in self._app.button_names():
            raise ControlError(f"no button named {button!r}")
        result = self._app.press(button, source="control socket")
        return {"button": button, "result": result.result, "visit": result.visit}

    async def open_door(self) -> dict[str, Any]:
        result = self._app.open_door(by="control")
        return {"opened": result.opened, **({"reason": result.reason} if result.reason else {})}

    async def dial(self, uri: str) -> dict[str, Any]:
        try:
            call = await self._app.dial(uri)
        except SipError as exc:
            raise ControlError(f"dial {uri}: {exc}") from exc
        return {"dialed": uri, "call": call}

    async def hangup(self) -> dict[str, Any]:
        return await self._app.hangup()

    async def history(self, limit: int) -> list[dict[str, Any]]:
        return await self._app.history(limit)

    def events(self) -> AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]:
        return self._app.events()

    async def selftest(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(row) for row in await self._app.selftest()]

    async def reload(self) -> dict[str, Any]:
        return (await self._app.reload()).as_dict()
