"""N visits in a row through the real stack (MockFactory pins, pjsua2, baresip, sipp, SQLite) with faults
chosen at random: answered + right code, answered + wrong code then hang-up, busy (486), no answer (ring
timeout), answered then hung up at once, and answered + right code while a burst of 100 INVITEs 2 ms apart
from a caller not on the allowlist hits the SIP port (from another process). Zero lost history rows, zero
stuck calls, relay never left energized, threads/fds/RSS flat.

CI runs INTERCOM_SOAK_VISITS (default 20, well under a minute); the full run is
``INTERCOM_SOAK_VISITS=1000 .venv/bin/pytest tests/soak -s`` (figures printed, see docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from daemon.config import ButtonConfig
from tests.reliability._support import apartment, config_with, history_rows, resources
from tests.scenario.conftest import run_panel
from tests.support.alsa import AlsaCapture
from tests.support.peers import Baresip, Sipp
from tests.support.sip_flood import FloodResult, run_flood

pytestmark = [pytest.mark.anyio, pytest.mark.peers]

VISITS = int(os.environ.get("INTERCOM_SOAK_VISITS", "20"))
SEED = int(os.environ.get("INTERCOM_SOAK_SEED", "2024"))
# kind -> (button, pin, expected outcome)
KINDS = {
    "code": ("ok", 17, "door_opened"),
    "wrong_code": ("ok", 17, "not_opened"),
    "busy": ("busy", 18, "busy"),
    "no_answer": ("silent", 19, "no_answer"),
    "hangup_at_once": ("bye", 20, "not_opened"),
    "code_under_flood": ("ok", 17, "door_opened"),
}
FLOOD_INVITES = 100
# Floods following each other once made the panel's own dial fail locally with PJ_ETOOMANY (every call slot held
# by refused callers whose INVITE transactions had not ended): always on the pjsua2 source build, now and then on
# the wheel. The cause: a dial finding every slot taken ended lingering INVITE transactions of cancelled calls that
# had already given their slots back, counted that as a freed slot and gave up instead of refusing a waiting caller
# (docs/pjsua2.md, section 6; tests/sip/test_flood.py). Fixed, the kind is back in the soak (INTERCOM_SOAK_FLOODS=0
# leaves it out, e.g. to tell a flood's effect apart from another cause).
if os.environ.get("INTERCOM_SOAK_FLOODS") == "0":
    del KINDS["code_under_flood"]


@pytest.mark.timeout(max(120, VISITS * 6))
async def test_soak(tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture) -> None:
    rng = random.Random(SEED)
    with (
        Baresip(tmp_path, user="ok") as phone,
        Sipp(tmp_path, "uas_busy") as busy,
        Sipp(tmp_path, "uas_never_answer") as silent,
        Sipp(tmp_path, "uas_answer_random_bye") as bye,
    ):
        apts = [
            apartment("ok", phone.uri, codes=("1",), buttons=("ok",)),
            apartment("busy", busy.uri("busy"), buttons=("busy",)),
            apartment("silent", silent.uri("silent"), buttons=("silent",)),
            apartment("bye", bye.uri("bye"), buttons=("bye",)),
        ]
        config = config_with(
            tmp_path,
            prompt_cache,
            apts,
            relay={"pulse_seconds": 0.2},
            ring_timeout_seconds=0.8,
            hangup_after_open_seconds=0.2,
            wrong_code_limit=10_000,
        )
        buttons = tuple(
            ButtonConfig(name, pin, holdoff_ms=200) for name, pin, _ in {(b, p, 0) for b, p, _ in KINDS.values()}
        )
        config = replace(config, buttons=buttons)
        expected: list[str] = []
        series: dict[int, int] = {}  # visit number -> RSS kB
        baresip_events = 0
        kinds: dict[str, int] = {}
        floods: list[FloodResult] = []

        async def flood(port: int) -> None:
            floods.append(await run_flood(port, FLOOD_INVITES, 2))

        async with run_panel(config) as panel, anyio.create_task_group() as tg:
            relay_pin = panel.factory.pin(config.relay.pin)
            before = resources()
            for n in range(1, VISITS + 1):
                kind = rng.choice(list(KINDS))
                kinds[kind] = kinds.get(kind, 0) + 1
                _, pin, outcome = KINDS[kind]
                expected.append(outcome)
                if kind == "code_under_flood":
                    tg.start_soon(flood, panel.app.sip.sip_port)
                    await anyio.sleep(0.1)
                await panel.press(pin, hold=0.06)
                if kind in ("code", "wrong_code", "code_under_flood"):
                    await phone.wait_event("CALL_ESTABLISHED", 10)
                    # 0.8 s: on the source build a digit sent 0.3 s after the answer was now and then lost (its
                    # media was not flowing yet: seen once in a 20-visit run). A resident does not type that fast.
                    await anyio.sleep(0.8)
                    phone.command("sndcode", "7" if kind == "wrong_code" else "1")
                    if kind == "wrong_code":
                        await anyio.sleep(0.4)
                        phone.hangup()
                await panel.visit_done(n, timeout=20)
                # The test's phone keeps every ctrl_tcp event it saw (for its error messages): ~10 per
                # answered call, ~6 MB over 1,000 visits, in this process's RSS. Not the daemon's: cleared.
                baresip_events += len(phone.all_events)
                phone.all_events.clear()
                await panel.until(lambda: not panel.relay_energized, 2, "relay released")
                await anyio.sleep(0.22)  # past the 200 ms hold-off: a press sooner is (rightly) ignored
                if n == min(5, VISITS):
                    before = resources()  # after warm-up: pools, caches and the first calls
                if n % 100 == 0 or n == min(5, VISITS):
                    # A series, not just two points: pjsip grows its pools the first few times each kind of
                    # call (and the first flood) happens, which may be after visit 5; flat after that is the test.
                    series[n] = resources()["rss_kb"]
            with anyio.fail_after(60):
                while len(floods) < kinds.get("code_under_flood", 0):
                    await anyio.sleep(0.1)
            live = await panel.app.sip.live_calls()
            after = resources()
            records = await panel.app.visit_history.recent(VISITS + 10)
            state_dir = config.paths.state_dir
            energized_at_end = panel.relay_energized
            pulses = sum(
                1 for a, b in zip(relay_pin.states, relay_pin.states[1:], strict=False) if not a.state and b.state
            )
            faults = panel.app.sip.fault_counters
        rows = history_rows(state_dir)
    outcomes = [r.outcome for r in sorted(records, key=lambda r: r.started_at)]
    figures = {
        "visits": VISITS,
        "seed": SEED,
        "kinds": kinds,
        "history_rows": rows,
        "live_calls_at_end": len(live),
        "relay_pulses": pulses,
        "door_opened_visits": outcomes.count("door_opened"),
        "relay_energized_at_end": energized_at_end,
        "before": before,
        "after": after,
        "callback_faults": faults,
        "rss_kb_by_visit": series,
        "baresip_events_cleared": baresip_events,
        "flood_invites_sent": sum(int(str(f["sent"])) for f in floods),
        "flood_invites_unanswered": sum(int(str(f["unanswered"])) for f in floods),
    }
    print("\nsoak figures:", json.dumps(figures))
    assert rows == VISITS and len(records) == VISITS
    assert outcomes == expected
    assert live == [] and not energized_at_end and faults == (0, 0)
    assert figures["flood_invites_unanswered"] == 0
    assert pulses == outcomes.count("door_opened")
    assert after["threads"] <= before["threads"] + 1
    assert after["fds"] <= before["fds"] + 4
    assert after["rss_kb"] - before["rss_kb"] < 20_000 + 20 * VISITS
