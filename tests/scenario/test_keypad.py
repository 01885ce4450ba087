"""The keypad panel end to end on mock pins: keys pressed on a mock matrix, through the outbox and the bridge, into
the router's typing state, then a visit exactly like a button press (real pjsua2, real baresip)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import anyio
import pytest
from gpiozero.pins.mock import MockFactory

from benchmarks.directory_bench import write_panel
from daemon.app import running
from daemon.config import Apartment, Config, KeypadSettings, load_config
from daemon.flow.keypad import Tone
from hw.settings import LAYOUT_3X4, DoorConfig, DoorContactConfig, InputConfig, RelayConfig
from tests.scenario.conftest import Panel, scenario_config
from tests.support.alsa import AlsaCapture
from tests.support.keypad_matrix import MockMatrix
from tests.support.peers import Baresip

pytestmark = [pytest.mark.anyio, pytest.mark.peers]

ROWS, COLUMNS = (12, 16, 20, 21), (13, 19, 26)
KEYPAD = KeypadSettings(rows=ROWS, columns=COLUMNS, layout=LAYOUT_3X4, settle_ms=10)


class KeypadPanel(Panel):
    def __init__(self, panel: Panel, matrix: MockMatrix) -> None:
        super().__init__(panel.app, panel.factory)
        self.matrix = matrix

    async def type(self, keys: str) -> None:
        """Press and release each key as a visitor does: held 60 ms (past the keypad's settle time), 60 ms apart."""
        for key in keys:
            self.matrix.press(key)
            await anyio.sleep(0.06)
            self.matrix.release(key)
            await anyio.sleep(0.06)


@asynccontextmanager
async def run_keypad(config: Config) -> AsyncIterator[KeypadPanel]:
    factory = MockFactory()
    matrix = MockMatrix(factory, ROWS, COLUMNS, LAYOUT_3X4)  # before the panel: its row pins join the columns
    try:
        async with running(config, pin_factory=factory) as app:
            yield KeypadPanel(Panel(app, factory), matrix)
    finally:
        factory.reset()


def keypad_config(tmp_path: Path, cache: Path, *apartments: Apartment, **keypad: object) -> Config:
    config = scenario_config(tmp_path, cache, list(apartments))
    return replace(config, keypad=replace(KEYPAD, **keypad))  # type: ignore[arg-type]


async def test_a_number_typed_calls_the_apartment_and_its_code_opens(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with Baresip(tmp_path, user="101") as phone:
        apt = Apartment(name="101", buttons=("101",), residents=(phone.uri,), codes=("4821",), number="101")
        async with run_keypad(keypad_config(tmp_path, prompt_cache, apt)) as panel:
            await panel.type("101#")
            await phone.wait_event("CALL_ESTABLISHED", 10)
            await anyio.sleep(0.3)
            for digit in "4821":
                phone.command("sndcode", digit)
                await anyio.sleep(0.3)  # digits closer than ~250 ms apart queue in pjsua
            await panel.until(lambda: panel.relay_energized, 5, "relay energized")
            await panel.visit_done()
            (record,) = await panel.app.visit_history.recent(5)
            events = panel.events()
            click = panel.app._ports.tones.tones[Tone.CLICK][0]  # type: ignore[union-attr]
    assert record.outcome == "door_opened" and record.apartment == "101" and record.button == "keypad"
    names = [e["event"] for e in events]
    assert names.index("KEYPAD_CALL") < names.index("CALL_START") < names.index("DOOR_OPEN")
    # The visitor heard the keys: the click's samples reached ALSA whole.
    assert click in speaker.all_frames()
    # No key reached the event log: typed keys are not events of their own, and nothing quotes them.
    assert not any("KEY" in e["event"] and e["event"] != "KEYPAD_CALL" for e in events)


async def test_an_unknown_number_is_spoken_and_nobody_is_called(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    apt = Apartment(name="101", buttons=("101",), residents=("sip:101@127.0.0.1:9",), number="101")
    async with run_keypad(keypad_config(tmp_path, prompt_cache, apt)) as panel:
        await panel.type("909#")
        await panel.app.visit_log.flush()
        not_found = panel.app.prompts.speaker_pcm("apartment_not_found").data
        await panel.until(lambda: not_found[:8000] in speaker.all_frames(), 10, "'not found' played")
        await panel.app.visit_log.flush()
        events = panel.events()
        completed = panel.app.visits.completed
    names = [e["event"] for e in events]
    assert "NUMBER_NOT_FOUND" in names and "CALL_START" not in names and completed == 0
    # A number not found is never quoted (it may be a PIN); the clock's fields and the random visit id may hold
    # "909" by chance (a timestamp's microseconds did).
    quoted = [{k: v for k, v in e.items() if k not in ("timestamp", "elapsed_seconds", "visit")} for e in events]
    assert not any("909" in str(e) for e in quoted)


async def test_star_erases_and_only_the_number_typed_after_it_calls(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with Baresip(tmp_path, user="102") as phone:
        apts = (
            Apartment(name="101", buttons=("101",), residents=("sip:101@127.0.0.1:9",), number="101"),
            Apartment(name="102", buttons=(), residents=(phone.uri,), number="102"),
        )
        async with run_keypad(keypad_config(tmp_path, prompt_cache, *apts)) as panel:
            await panel.type("10*102#")
            await phone.wait_event("CALL_ESTABLISHED", 10)
            phone.hangup()
            await panel.visit_done()
            (record,) = await panel.app.visit_history.recent(5)
    assert record.apartment == "102"


async def test_a_number_calls_by_itself_after_the_pause(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with Baresip(tmp_path, user="101") as phone:
        apt = Apartment(name="101", buttons=(), residents=(phone.uri,), number="101")
        config = keypad_config(tmp_path, prompt_cache, apt, call_after_idle_seconds=0.5)
        async with run_keypad(config) as panel:
            await panel.type("101")  # no call key
            await phone.wait_event("CALL_ESTABLISHED", 10)
            phone.hangup()
            await panel.visit_done()
            (record,) = await panel.app.visit_history.recent(5)
    assert record.apartment == "101" and record.button == "keypad"


def two_doors(config: Config) -> Config:
    social = DoorConfig("social", RelayConfig(pin=27, pulse_seconds=1), exit_button=InputConfig(22, min_press_ms=20))
    garage = DoorConfig("garage", RelayConfig(pin=25, pulse_seconds=1), door_contact=DoorContactConfig(23))
    return replace(config, doors=(social, garage), exit_button=None, door_contact=None)


async def test_the_residents_code_for_door_2_pulses_only_door_2(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with Baresip(tmp_path, user="101") as phone:
        apt = Apartment(
            name="101",
            buttons=(),
            residents=(phone.uri,),
            codes=("4821",),
            door_codes={"garage": ("7391",)},
            number="101",
        )
        config = two_doors(keypad_config(tmp_path, prompt_cache, apt))
        spoken = {"garage": "Portão da garagem aberto."}  # "portão social aberto": the door is named
        config = replace(config, prompts=replace(config.prompts, doors=spoken))
        async with run_keypad(config) as panel:
            social, garage = panel.factory.pin(27), panel.factory.pin(25)
            await panel.type("101#")
            await phone.wait_event("CALL_ESTABLISHED", 10)
            await anyio.sleep(0.3)
            for digit in "7391":
                phone.command("sndcode", digit)
                await anyio.sleep(0.3)
            await panel.until(lambda: bool(garage.state), 5, "garage relay energized")
            await panel.visit_done()
            (record,) = await panel.app.visit_history.recent(5)
            social_pulsed = any(s.state for s in social.states)
            garage_open = panel.app.prompts.speaker_pcm("door_open.garage").data
            await panel.until(lambda: garage_open[:8000] in speaker.all_frames(), 10, "the garage named")
            # The exit button inside the pedestrian gate opens that gate alone.
            await panel.until(lambda: not garage.state, 5, "garage relay released")
            await panel.press(22)
            await panel.until(lambda: bool(social.state), 5, "social relay energized by its exit button")
            assert not garage.state
            # intercomctl open DOOR: by name, and an unknown name is refused with the doors listed.
            refused = panel.app.open_door("cellar", by="test")
            opened = panel.app.open_door("garage", by="test")
            status = panel.app.status()
            await panel.app.visit_log.flush()
            events = panel.events()
            assert await panel.app.visit_history.flush()
            rows = await panel.app.visit_history.recent(5)
    assert not social_pulsed  # the pedestrian gate stayed locked throughout the visit
    assert record.door_opened and record.extra["door"] == "garage"
    assert opened.opened and not refused.opened and "social, garage" in refused.reason
    assert status["doors"]["garage"]["energized"] is True  # type: ignore[index]
    door_open = [e for e in events if e["event"] == "DOOR_OPEN"]
    assert door_open[0]["text"] == "code accepted: garage" and door_open[-1]["door"] == "garage"
    exits = [e for e in events if e["event"] == "EXITREQUESTED"]
    assert exits and "door='social'" in exits[0]["text"]
    # Every open has its history row: who, which door, how.
    opens = {(r.open_method, r.extra.get("door"), r.opened_by) for r in rows if r.door_opened}
    assert opens == {("dtmf", "garage", phone.uri), ("exit", "social", "exit button"), ("control", "garage", "test")}


async def test_a_directory_of_5000_apartments_loads_a_number_in_it_dials_and_sighup_reloads_it(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with Baresip(tmp_path, user="4321") as phone, Baresip(tmp_path, user="7777") as newcomer:
        toml = write_panel(tmp_path, 5000, resident={"4321": phone.uri})
        loaded, _ = load_config(toml)
        base = scenario_config(tmp_path, prompt_cache, list(loaded.apartments))
        config = replace(base, keypad=KEYPAD, directory=loaded.directory)
        # The reload reads the file again: the running daemon's own sections (SIP port, paths) need a restart.
        toml.write_text(
            toml.read_text()
            .replace("port = 5060", f"port = {config.sip.port}")
            .replace(f'"{tmp_path}"', f'"{config.paths.state_dir}"')
        )
        factory = MockFactory()
        matrix = MockMatrix(factory, ROWS, COLUMNS, LAYOUT_3X4)
        try:
            async with running(config, config_path=toml, pin_factory=factory) as app:
                panel = KeypadPanel(Panel(app, factory), matrix)
                await panel.type("4321#")
                await phone.wait_event("CALL_ESTABLISHED", 10)
                phone.hangup()
                await panel.visit_done()
                # SIGHUP: a new apartment in the file is reachable at once.
                with (tmp_path / "directory.csv").open("a") as csv:
                    csv.write(f"7777,Novo,{newcomer.uri},,,\n")
                reloaded = await app.reload()
                await panel.type("7777#")
                await newcomer.wait_event("CALL_ESTABLISHED", 10)
                newcomer.hangup()
                await panel.visit_done(2)
                first, second = await app.visit_history.recent(5)
                exported = app.directory_csv()
        finally:
            factory.reset()
    assert (second.apartment, first.apartment) == ("Apto 4321", "Novo")
    assert reloaded.reloaded and "apartments" in reloaded.applied
    assert exported.count("\n") == 1 + 5002 + 1 and f"7777,Novo,{newcomer.uri},,parallel,\n" in exported
