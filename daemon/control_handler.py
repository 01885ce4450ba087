"""The app's side of the control socket: each command mapped onto the running daemon."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from daemon.errors import ControlError, SipError
from daemon.sip.types import CallHandle

if TYPE_CHECKING:
    from daemon.app import IntercomApp

__all__ = ["AppControl"]


class AppControl:
    """Implements :class:`daemon.control.ControlHandler` over an :class:`~daemon.app.IntercomApp`."""

    def __init__(self, app: IntercomApp) -> None:
        self._app = app
        self._manual: list[CallHandle] = []  # calls placed by `dial`, ended by `hangup`

    async def status(self) -> dict[str, Any]:
        return self._app.status()

    async def press(self, button: str) -> dict[str, Any]:
        if button not in {b.name for b in self._app.config.buttons}:
            raise ControlError(f"no button named {button!r}")
        what, visit = self._app.visits.press(button)
        self._app.visit_log.event(visit, "BUTTON_PRESSED", button, f"control socket: {what}")
        return {"button": button, "result": what, "visit": visit}

    async def open_door(self) -> dict[str, Any]:
        opened = self._app.panel.relay.open()
        self._app.visit_log.event(
            "-", "DOOR_OPEN", "control", "opened from the control socket" if opened else "refused: relay blocked"
        )
        return {"opened": bool(opened)}

    async def dial(self, uri: str) -> dict[str, Any]:
        try:
            handle = await self._app.sip.dial(uri)
        except SipError as exc:
            raise ControlError(f"dial {uri}: {exc}") from exc
        self._manual.append(handle)
        return {"dialed": uri, "call": handle.generation}

    async def hangup(self) -> dict[str, Any]:
        """Ends the visit in progress (its teardown hangs up its calls) and any call placed by `dial`."""
        self._app.visits.cancel_current()
        ended = 0
        for handle in self._manual:
            try:
                await self._app.sip.hangup(handle)
                ended += 1
            except SipError:
                pass  # already over
        self._manual.clear()
        return {"hung_up": ended, "visit_cancelled": self._app.visits.current is not None}

    async def history(self, limit: int) -> list[dict[str, Any]]:
        return [dataclasses.asdict(r) for r in await self._app.history.recent(max(1, min(limit, 1000)))]

    @asynccontextmanager
    async def _events(self) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        stream = self._app.visit_log.subscribe()

        async def fields() -> AsyncIterator[dict[str, Any]]:
            async for event in stream:
                yield {"event": event.name, **event.fields()}

        try:
            yield fields()
        finally:
            stream.close()

    def events(self) -> Any:
        return self._events()

    async def selftest(self) -> list[dict[str, Any]]:
        from hw.selftest import run_selftest

        results = await run_selftest(self._app.panel)
        rows = [{"check": r.check, "passed": r.passed, "detail": r.detail} for r in results]
        reg = self._app.sip.registration
        rows.append(
            {
                "check": "sip registration",
                "passed": reg.active or not reg.configured,
                "detail": "direct-IP, no registrar" if not reg.configured else f"{reg.code} {reg.reason}",
            }
        )
        config = self._app.config
        targets = (
            [config.sip.account.registrar]
            if config.sip.account.registrar
            else sorted({uri for apt in config.apartments for uri in (*apt.residents, apt.fallback) if uri})[:8]
        )
        for uri in targets:
            try:
                code = await self._app.sip.options_ping(uri, within=2.0)
                rows.append(
                    {
                        "check": f"SIP OPTIONS {uri}",
                        "passed": 200 <= code < 300 or code in (405, 501),
                        "detail": f"answered {code}",
                    }
                )
            except SipError as exc:
                rows.append({"check": f"SIP OPTIONS {uri}", "passed": False, "detail": str(exc)})
        return rows

    async def reload(self) -> dict[str, Any]:
        return await self._app.reload()
