"""The panel of benchmarks/net_visits.py: the whole daemon in-process (``daemon.app.running``, gpiozero's
MockFactory pins, prompts played through PortAudio into ALSA's file plugin), run inside the netlab's panel
namespace. It calls one apartment, ``101``, whose resident is the direct-IP URI it is given.

``python -m benchmarks.net_visit_panel CONFIG_JSON`` (``state``, ``cache``: directories; ``resident``: the
resident's URI; ``code``: the apartment's door code). It prints JSON lines, as tests/support/sip_harness.py does:
``{"ready": true}``; ``{"event": "relay", "at": t}`` at each rising edge of the door relay's pin (read every 2 ms:
the figures' resolution) and ``{"event": "relay_off", ...}`` at each falling one (a 1 s pulse); ``{"event":
"visit", "count": n, "at": t}`` when the n-th visit has ended. ``at`` is ``time.monotonic()``, one clock for every
namespace of the machine. Commands on stdin: ``{"cmd": "press"}`` (the doorbell, 100 ms) -> ``{"pressed": t}``;
``{"cmd": "quit"}``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
from gpiozero.pins.mock import MockFactory

from daemon.app import running
from daemon.config import Apartment, Config, PathsConfig, default_config_text, parse_config
from daemon.simulation.alsa import capture_alsa

BUTTON_PIN = 17  # the default config's doorbell "101"
PANEL_URI_HOST = "10.77.0.2"  # tests/support/netlab.py's PANEL_IP (the From the resident allows)


def _say(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def panel_config(fields: dict[str, Any]) -> Config:
    base = parse_config(default_config_text())
    account = replace(base.sip.account, uri=f"sip:portao@{PANEL_URI_HOST}")
    apartment = Apartment(name="101", buttons=("101",), residents=(fields["resident"],), codes=(fields["code"],))
    state = Path(fields["state"])
    return replace(
        base,
        sip=replace(
            base.sip,
            bind_address="0.0.0.0",
            port=5060,
            rtp_port=20000,
            inbound_allow=(),
            inbound_sources=(),
            account=account,
        ),
        apartments=(apartment,),
        buttons=base.buttons[:1],
        relay=replace(base.relay, pulse_seconds=1.0),  # over before the next visit: an open during a pulse extends it
        # No lockout: a digit lost on the link makes a wrong code, and three in a row would lock the apartment out
        # for the visits after (the figure would then be the lockout's, not the link's).
        timing=replace(base.timing, ring_timeout_seconds=20, hangup_after_open_seconds=0.5, wrong_code_limit=1_000_000),
        paths=PathsConfig(state_dir=str(state), cache_dir=str(fields["cache"]), runtime_dir=str(state / "run")),
    )


async def main(fields: dict[str, Any]) -> None:
    config = panel_config(fields)
    factory = MockFactory()
    with capture_alsa(Path(fields["state"]) / "alsa"):
        async with running(config, pin_factory=factory) as app, anyio.create_task_group() as tg:
            relay = factory.pin(config.relay.pin)
            button = factory.pin(BUTTON_PIN)

            async def watch_relay() -> None:
                was_on = False
                while True:
                    on = bool(relay.state)
                    if on != was_on:
                        _say({"event": "relay" if on else "relay_off", "at": time.monotonic()})
                    was_on = on
                    await anyio.sleep(0.002)

            async def watch_visits() -> None:
                count = 0
                while True:
                    count += 1
                    await app.visits.wait_completed(count)
                    _say({"event": "visit", "count": count, "at": time.monotonic()})

            tg.start_soon(watch_relay)
            tg.start_soon(watch_visits)
            _say({"ready": True})
            while line := await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True):
                command = json.loads(line).get("cmd")
                if command == "press":
                    at = time.monotonic()
                    button.drive_low()  # pull-up input: pressed is low
                    await anyio.sleep(0.1)
                    button.drive_high()
                    _say({"pressed": at})
                elif command == "quit":
                    break
                else:
                    _say({"error": f"unknown command {command!r}"})
            tg.cancel_scope.cancel()
    factory.reset()


if __name__ == "__main__":
    # The daemon's log on stderr (the benchmark's --keep directory, panel/engine.log): why a visit failed.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    anyio.run(main, json.loads(sys.argv[1]))
