"""A SIP engine in a process of its own, for tests that run it inside a netlab namespace.

``python -m tests.support.sip_harness CONFIG_JSON``: CONFIG_JSON holds :class:`SipConfig` fields (``account``
a dict of :class:`SipAccountConfig` fields). It prints one JSON object per line: ``{"ready": port}`` once
started, then ``{"event": "RegistrationChanged", ...}`` for every engine event, and one answer per command.
Commands, one JSON object per line on stdin: ``{"cmd": "dial", "uri": ...}`` -> ``{"dialed": generation,
"remote_uri": ...}``; ``{"cmd": "hangup", "generation": n}``; ``{"cmd": "dtmf", "generation": n, "digits": "123",
"method": "rfc2833"|"info", "gap": s}`` (a call dialled or answered; keys ``gap`` s apart) -> ``{"ok": true,
"at": monotonic time the first was sent}``;
``{"cmd": "status"}`` -> ``{"registration": {...}, "address_changes": n}``; ``{"cmd": "quit"}``. A command that
fails answers ``{"error": "..."}``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Any

import anyio

from daemon.bridge import LoopBridge
from daemon.config import SipAccountConfig, SipConfig
from daemon.errors import IntercomError
from daemon.sip import CallHandle, IncomingCall, SipEngine, SipEvent


def config_from(data: dict[str, Any]) -> SipConfig:
    account: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.pop("account", {}).items()}
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return SipConfig(**fields, account=SipAccountConfig(**account))


def _say(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, default=str), flush=True)


def _event(event: SipEvent) -> dict[str, Any]:
    body = dataclasses.asdict(event)
    return {"event": type(event).__name__, **body}


async def _command(engine: SipEngine, handles: dict[int, CallHandle], line: str) -> bool:
    request = json.loads(line)
    cmd = request.get("cmd")
    try:
        if cmd == "dial":
            handle = await engine.dial(request["uri"], request.get("ring_timeout", 10))
            handles[handle.generation] = handle
            _say({"dialed": handle.generation, "remote_uri": handle.remote_uri})
        elif cmd == "dtmf":
            # ``gap``: seconds between keys, each sent on its own as a person types them (0: all in one go).
            handle, gap, at = handles[int(request["generation"])], float(request.get("gap", 0)), time.monotonic()
            keys = list(request["digits"]) if gap else [request["digits"]]
            for i, key in enumerate(keys):
                if i:
                    await anyio.sleep(gap)
                await engine.send_dtmf(handle, key, request.get("method", "rfc2833"))
            _say({"ok": True, "at": at})
        elif cmd == "hangup":
            await engine.hangup(handles[int(request["generation"])])
            _say({"ok": True})
        elif cmd == "status":
            registration = dataclasses.asdict(engine.registration)
            _say({"registration": registration, "address_changes": engine.address_changes})
        elif cmd == "quit":
            return False
        else:
            _say({"error": f"unknown command {cmd!r}"})
    except (IntercomError, KeyError) as exc:
        _say({"error": f"{type(exc).__name__}: {exc}"})
    return True


async def main(config: SipConfig) -> None:
    bridge = LoopBridge()
    handles: dict[int, CallHandle] = {}
    try:
        async with SipEngine(config, bridge) as engine, anyio.create_task_group() as tg:
            _say({"ready": engine.sip_port})

            async def events() -> None:
                async for event in engine.events:
                    if isinstance(event, IncomingCall):  # an answered caller can be sent digits
                        handles[event.handle.generation] = event.handle
                    _say(_event(event))

            tg.start_soon(events)
            while line := await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True):
                if not await _command(engine, handles, line):
                    break
            tg.cancel_scope.cancel()
    finally:
        bridge.close()


if __name__ == "__main__":
    anyio.run(main, config_from(json.loads(sys.argv[1])))
