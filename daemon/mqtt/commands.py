"""Commands from the command topic, each refused unless enabled in ``[mqtt.commands]``.

A command is one JSON object: ``{"cmd": "open" | "press" | "dial" | "hangup" | "reload", "id": "...",
"button": "101", "uri": "sip:...", "door": "..."}``. Every command gets one reply (``id`` echoed) and every
refusal is logged with its reason. A *retained* command is always refused: a retained "open" would open
the door again at every reconnect. The door is said to be open only when the relay energized
(``OpenResult.opened``).
"""

from __future__ import annotations

import json
import logging
from enum import StrEnum

import anyio

from daemon.errors import IntercomError
from daemon.facade import AppFacade

__all__ = ["MAX_COMMAND_BYTES", "CommandName", "run_command"]

log = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 4096
COMMAND_TIMEOUT = 30.0


class CommandName(StrEnum):
    OPEN = "open"
    PRESS = "press"
    DIAL = "dial"
    HANGUP = "hangup"
    RELOAD = "reload"


class _Refused(Exception):
    pass


async def run_command(app: AppFacade, enabled: frozenset[str], payload: bytes, *, retained: bool) -> dict[str, object]:
    """Parse, check and run one command; the reply to publish. Never raises (but for cancellation)."""
    reply: dict[str, object] = {"ok": False}
    try:
        request = _parse(payload)
        request_id = request.get("id")
        if isinstance(request_id, str | int) and not isinstance(request_id, bool):
            reply["id"] = str(request_id)[:64]
        raw_name = request.get("cmd")
        reply["cmd"] = raw_name if isinstance(raw_name, str) else ""
        name = _allowed(raw_name, enabled, retained=retained)
        with anyio.fail_after(COMMAND_TIMEOUT):
            ok, result = await _run(app, name, request)
    except _Refused as exc:
        log.warning("mqtt: command %r refused: %s", reply.get("cmd", ""), exc)
        reply["error"] = str(exc)
        return reply
    except TimeoutError:
        log.error("mqtt: command %r did not finish within %.0f s", reply.get("cmd", ""), COMMAND_TIMEOUT)
        reply["error"] = "timed out"
        return reply
    except IntercomError as exc:
        log.warning("mqtt: command %r failed: %s", reply.get("cmd", ""), exc)
        reply["error"] = str(exc)
        return reply
    except Exception as exc:  # a bug in the app must not end the MQTT link (the panel goes on without it)
        log.exception("mqtt: command %r raised", reply.get("cmd", ""))
        reply["error"] = f"internal error: {type(exc).__name__}"
        return reply
    log.info("mqtt: command %r done: %s", name.value, "ok" if ok else "not done")
    reply.update(ok=ok, result=result)
    return reply


def _allowed(raw_name: object, enabled: frozenset[str], *, retained: bool) -> CommandName:
    try:
        name = CommandName(str(raw_name))
    except ValueError:
        raise _Refused(f"unknown command; accepted: {', '.join(c.value for c in CommandName)}") from None
    if retained:
        raise _Refused("retained commands are never run (one would run again at every reconnect)")
    if name.value not in enabled:
        raise _Refused(f"command {name.value!r} is disabled; enable it in [mqtt.commands]")
    return name


def _parse(payload: bytes) -> dict[str, object]:
    if len(payload) > MAX_COMMAND_BYTES:
        raise _Refused(f"command longer than {MAX_COMMAND_BYTES} bytes")
    try:
        request = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _Refused('not a JSON object; send e.g. {"cmd": "open", "id": "1"}') from None
    if not isinstance(request, dict):
        raise _Refused('not a JSON object; send e.g. {"cmd": "open", "id": "1"}')
    return request


def _string(request: dict[str, object], key: str, *, required: bool) -> str | None:
    value = request.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise _Refused(f"{key!r} must be a non-empty string")
    return value


async def _run(app: AppFacade, name: CommandName, request: dict[str, object]) -> tuple[bool, dict[str, object]]:
    match name:
        case CommandName.OPEN:
            opened = app.open_door(_string(request, "door", required=False), by="mqtt")
            return opened.opened, {"opened": opened.opened, "reason": opened.reason}
        case CommandName.PRESS:
            button = _string(request, "button", required=True)
            assert button is not None
            if button not in app.button_names():
                raise _Refused(f"no button named {button!r}; buttons: {', '.join(app.button_names())}")
            pressed = app.press(button, source="mqtt")
            done = not pressed.result.startswith(("refused", "unknown"))
            return done, {"result": pressed.result, "visit": pressed.visit}
        case CommandName.DIAL:
            uri = _string(request, "uri", required=True)
            assert uri is not None
            return True, {"call": await app.dial(uri)}
        case CommandName.HANGUP:
            return True, await app.hangup()
        case CommandName.RELOAD:
            reloaded = await app.reload()
            return reloaded.reloaded, reloaded.as_dict()
