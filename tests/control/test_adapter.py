"""AppControl: each typed request onto the facade, and nothing but the facade."""

from __future__ import annotations

import ast
import inspect
from typing import Any

import pytest

from daemon.control import adapter
from daemon.control.adapter import AppControl
from daemon.control.protocol import (
    DialRequest,
    HistoryRequest,
    OpenRequest,
    Peer,
    PressRequest,
    ReloadRequest,
    SelftestRequest,
)
from daemon.errors import ControlError, SipError
from daemon.facade import OpenResult, ReloadResult

PEER = Peer(uid=1000, pid=4242)


async def test_press_names_who_pressed_and_refuses_unknown_buttons(app: Any) -> None:
    control = AppControl(app)
    assert await control.execute(PressRequest("101"), PEER) == {"button": "101", "result": "started", "visit": "v1"}
    assert app.calls == [("press", ("101", "control socket (uid 1000)"))]
    with pytest.raises(ControlError, match="no button named '999'; known: 101, concierge"):
        await control.execute(PressRequest("999"), PEER)
    assert len(app.calls) == 1  # the unknown name never reached press()


async def test_press_that_the_app_no_longer_knows_is_refused(app: Any) -> None:
    app.press_result = "unknown button"  # a reload removed it between button_names() and press()
    with pytest.raises(ControlError, match="no button named '101'"):
        await AppControl(app).execute(PressRequest("101"), PEER)


async def test_open_passes_the_door_and_who_and_reports_a_refusal(app: Any) -> None:
    control = AppControl(app)
    assert await control.execute(OpenRequest(), PEER) == {"opened": True, "reason": ""}
    app.open_result = OpenResult(False, "relay blocked by tamper")
    assert await control.execute(OpenRequest("gate"), PEER) == {"opened": False, "reason": "relay blocked by tamper"}
    assert app.calls == [("open", (None, "control socket (uid 1000)")), ("open", ("gate", "control socket (uid 1000)"))]


async def test_reload_carries_what_was_applied_and_what_needs_a_restart(app: Any) -> None:
    app.reload_result = ReloadResult(True, applied=("relay.pulse_seconds",), restart_needed=("sip.port",))
    assert await AppControl(app).execute(ReloadRequest(), PEER) == {
        "reloaded": True,
        "error": "",
        "applied": ["relay.pulse_seconds"],
        "restart_needed": ["sip.port"],
        "unchanged": False,
    }


async def test_selftest_rows_history_and_dial(app: Any) -> None:
    control = AppControl(app)
    assert await control.execute(SelftestRequest(), PEER) == [
        {"check": "relay at rest", "passed": True, "detail": "off"},
        {"check": "sip registration", "passed": False, "detail": "408 timeout"},
    ]
    rows = await control.execute(HistoryRequest(5), PEER)
    assert isinstance(rows, list) and rows[0]["outcome"] == "door_opened"
    assert await control.execute(DialRequest("sip:101@pbx"), PEER) == {"dialed": "sip:101@pbx", "call": "c1"}
    with pytest.raises(SipError, match="Invalid URI"):  # the server turns it into a "failed" reply
        await control.execute(DialRequest("tel:101"), PEER)


def test_the_adapter_imports_nothing_of_the_app_but_the_facade() -> None:
    """The issue's "facade instead of reaching in": no daemon module but the facade, errors and the protocol."""
    tree = ast.parse(inspect.getsource(adapter))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert {m for m in imported if m and m.startswith(("daemon", "hw"))} <= {
        "daemon.facade",
        "daemon.errors",
        "daemon.control.protocol",
    }
