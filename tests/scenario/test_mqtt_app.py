"""The whole daemon with MQTT on: a real Mosquitto, real pjsua2 calling a real baresip, mock pins.

A visit is seen on the broker as it happens (press, door, outcome) and never carries the code; an enabled
open command pulses the real relay; with the broker gone mid-visit the visit completes and its events arrive,
in order, once the broker is back.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import aiomqtt
import anyio
import pytest

from daemon.config import Apartment
from daemon.mqtt.settings import MqttCommandsConfig
from tests.mqtt.broker import Mosquitto
from tests.mqtt.fakes import Subscriber
from tests.mqtt.harness import link_config
from tests.scenario.conftest import run_panel, scenario_config
from tests.support.alsa import AlsaCapture
from tests.support.peers import Baresip

pytestmark = [pytest.mark.anyio, pytest.mark.peers]

PREFIX = "intercom/test"
CODE = "4821"


async def test_a_visit_reaches_the_broker_and_an_mqtt_open_pulses_the_relay(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with Mosquitto(tmp_path / "broker") as broker, Baresip(tmp_path, user="101") as phone:
        apt = Apartment(name="101", buttons=("101",), residents=(phone.uri,), codes=(CODE,))
        config = scenario_config(tmp_path, prompt_cache, [apt])
        mqtt = link_config(broker.port, commands=MqttCommandsConfig(open=True))
        config = replace(config, mqtt=mqtt, relay=replace(config.relay, pulse_seconds=0.5))
        async with Subscriber(broker.port, (f"{PREFIX}/#",)).running() as sub, run_panel(config) as panel:
            await sub.next(f"{PREFIX}/availability", payload="online")
            await panel.press()
            press = (await sub.next(f"{PREFIX}/event/doorbell/101")).json()
            assert press["button"] == "101" and press["apartment"] == "101" and press["result"] == "started"
            await phone.wait_event("CALL_ESTABLISHED", 10)
            await anyio.sleep(0.3)
            for digit in CODE:
                phone.command("sndcode", digit)
                await anyio.sleep(0.4)  # digits closer than ~250 ms apart queue in pjsua
            door = (await sub.next(f"{PREFIX}/event/door", timeout=20)).json()
            assert door["action"] == "unlocked"
            outcome = (await sub.next(f"{PREFIX}/event/visit", timeout=20)).json()
            assert outcome["outcome"] == "door_opened" and outcome["door_opened"] is True
            # The open command through the broker reaches the real relay.
            await panel.until(lambda: not panel.relay_energized, 5, "the code's pulse to end")
            async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                await client.publish(f"{PREFIX}/command", '{"cmd": "open", "id": "m1"}', qos=1)
            reply = (await sub.next(f"{PREFIX}/reply")).json()
            assert reply["ok"] is True and reply["result"]["opened"] is True
            await panel.until(lambda: panel.relay_energized, 5, "relay energized by the MQTT open")
            assert panel.app.status()["mqtt"]["connected"] is True  # type: ignore[index]
        for message in sub.received:
            assert CODE not in message.payload and CODE[:4] not in message.payload, message


async def test_broker_gone_mid_visit_the_visit_completes_and_its_events_follow_in_order(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with Mosquitto(tmp_path / "broker", persistence=True) as broker, Baresip(tmp_path, user="101") as phone:
        apt = Apartment(name="101", buttons=("101",), residents=(phone.uri,), codes=(CODE,))
        config = replace(scenario_config(tmp_path, prompt_cache, [apt]), mqtt=link_config(broker.port))
        # A persistent session: what the panel publishes while we are both away is kept for us by the broker.
        sub = Subscriber(broker.port, (f"{PREFIX}/event/#",), client_id="watcher", clean=False)
        async with sub.running():
            pass
        async with run_panel(config) as panel:
            with anyio.fail_after(10):
                while not panel.app.status()["mqtt"]["connected"]:  # type: ignore[index]
                    await anyio.sleep(0.05)
            broker.stop()
            await panel.press()
            await phone.wait_event("CALL_ESTABLISHED", 10)
            await anyio.sleep(0.3)
            for digit in CODE:
                phone.command("sndcode", digit)
                await anyio.sleep(0.3)
            await panel.visit_done()  # the visit never waited for the broker
            (record,) = await panel.app.visit_history.recent(5)
            assert record.outcome == "door_opened"
            assert panel.app.status()["mqtt"]["queued"] >= 3  # type: ignore[index]
            broker.start()
            async with sub.running():
                kinds = [(await sub.next(f"{PREFIX}/event/", timeout=30)).topic for _ in range(3)]
    assert kinds == [f"{PREFIX}/event/doorbell/101", f"{PREFIX}/event/door", f"{PREFIX}/event/visit"]
