"""The MQTT link against a real Mosquitto: availability, discovery, retained state, events, commands."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import aiomqtt
import anyio

from daemon.facade import OpenResult
from daemon.mqtt import MqttCommandsConfig
from tests.mqtt.broker import Mosquitto
from tests.mqtt.fakes import FakeApp, LogWaiter, Subscriber
from tests.mqtt.harness import link_config, running_link, until

PREFIX = "intercom/test"
ROOT = Path(__file__).resolve().parents[2]


async def test_discovery_and_retained_state_reach_a_late_subscriber(broker: Mosquitto, app: FakeApp) -> None:
    config = link_config(broker.port, commands=MqttCommandsConfig(open=True))
    async with Subscriber(broker.port, (f"{PREFIX}/#",)).running() as first, running_link(config, app):
        await first.next(f"{PREFIX}/availability", payload="online")
        await first.next(f"{PREFIX}/state/versions")  # the last of the first round: discovery, then state
        # A subscriber that comes later gets everything retained: what Home Assistant sees after a restart.
        async with Subscriber(broker.port, ("homeassistant/#", f"{PREFIX}/state/#")).running() as late:
            state = {}
            for name in ("registration", "relay", "door", "tamper", "versions"):
                state[name] = (await late.next(f"{PREFIX}/state/{name}")).payload
            assert state["registration"] == "up"
            assert state["relay"] == "locked"
            assert state["door"] == "closed"
            assert state["tamper"] == "ok"
            assert json.loads(state["versions"])["intercom"] == "0.1.0"
            doorbell = (await late.next("homeassistant/event/test/doorbell_101/config")).json()
            assert doorbell["event_types"] == ["press"]
            assert doorbell["device_class"] == "doorbell"
            assert doorbell["state_topic"] == f"{PREFIX}/event/doorbell/101"
            assert doorbell["availability_topic"] == f"{PREFIX}/availability"
            assert doorbell["device"]["identifiers"] == ["intercom_test"]
            assert doorbell["unique_id"] == "intercom_test_doorbell_101"
            opener = (await late.next("homeassistant/button/test/open_door/config")).json()
            assert opener["command_topic"] == f"{PREFIX}/command"
            assert json.loads(opener["payload_press"])["cmd"] == "open"
            lock = (await late.next("homeassistant/binary_sensor/test/lock/config")).json()
            assert (lock["device_class"], lock["payload_on"]) == ("lock", "unlocked")
            door = (await late.next("homeassistant/binary_sensor/test/door/config")).json()
            assert door["device_class"] == "door"
            await late.next("homeassistant/binary_sensor/test/tamper/config")
            await late.next("homeassistant/binary_sensor/test/registration/config")
            visit_sensor = (await late.next("homeassistant/sensor/test/last_visit/config")).json()
            assert visit_sensor["json_attributes_topic"] == f"{PREFIX}/state/last_visit"
            topics = {r.topic for r in late.received}
            # a disabled command has no entity (its config is cleared, and an empty retained message is not kept)
            assert "homeassistant/button/test/press_101/config" not in topics
            assert all(r.retain for r in late.received)

            # State follows the app: an event arrives, the changed state is published, retained.
            app.energized = True
            app.emit("RELAYCHANGED", "-", "", "energized=True")
            assert (await late.next(f"{PREFIX}/state/relay")).payload == "unlocked"


async def test_press_and_outcome_arrive_as_events_without_codes(broker: Mosquitto, app: FakeApp) -> None:
    async with Subscriber(broker.port, (f"{PREFIX}/#",)).running() as sub, running_link(link_config(broker.port), app):
        await sub.next(f"{PREFIX}/availability", payload="online")
        visit = app.visit_log.start_visit()
        app.emit("BUTTON_PRESSED", visit, "101", "started")
        app.emit("CALL_START", visit, "sip:res@127.0.0.1", "stage 0")
        app.emit("ANSWERED", visit, "sip:res@127.0.0.1", "")
        app.emit("DTMF", visit, "sip:res@127.0.0.1", "rfc2833: 4711", digit="4")
        app.emit("CODE_ACCEPTED", visit, "sip:res@127.0.0.1", "4711", code="4711")
        app.emit("DOOR_OPEN", visit, "sip:res@127.0.0.1", "code accepted")
        app.emit("OUTCOME", visit, "101", "door_opened", detail="", pin="4711")

        press = (await sub.next(f"{PREFIX}/event/doorbell/101")).json()
        assert press["event_type"] == "press"
        assert (press["button"], press["visit"], press["result"]) == ("101", visit, "started")
        door = (await sub.next(f"{PREFIX}/event/door")).json()
        assert (door["action"], door["by"], door["visit"]) == ("unlocked", "sip:res@127.0.0.1", visit)
        outcome = (await sub.next(f"{PREFIX}/event/visit")).json()
        assert outcome["outcome"] == "door_opened"
        assert outcome["door_opened"] is True
        assert outcome["answered_by"] == "sip:res@127.0.0.1"
        assert outcome["button"] == "101"
        assert isinstance(outcome["duration_seconds"], float)
        last = await sub.next(f"{PREFIX}/state/last_visit")
        assert last.json()["visit"] == visit and last.json()["outcome"] == "door_opened"
        event_topics = [r.topic for r in sub.received if "/event/" in r.topic]
        assert event_topics == [f"{PREFIX}/event/doorbell/101", f"{PREFIX}/event/door", f"{PREFIX}/event/visit"]
        for message in sub.received:
            assert "4711" not in message.payload
            assert '"code"' not in message.payload and '"pin"' not in message.payload
            assert '"digit"' not in message.payload


async def test_enabled_open_command_opens_and_disabled_one_is_refused(broker: Mosquitto, app: FakeApp) -> None:
    enabled = link_config(broker.port, commands=MqttCommandsConfig(open=True))
    async with Subscriber(broker.port, (f"{PREFIX}/#",)).running() as sub, running_link(enabled, app):
        await sub.next(f"{PREFIX}/availability", payload="online")
        await _publish(broker, f"{PREFIX}/command", {"cmd": "open", "id": "a1"})
        reply = (await sub.next(f"{PREFIX}/reply")).json()
        assert reply == {"ok": True, "id": "a1", "cmd": "open", "result": {"opened": True, "reason": ""}}
        assert app.opened == [(None, "mqtt")]
        # fail secure: a relay that did not energize is never reported as open
        app.open_result = OpenResult(False, "relay blocked by tamper")
        await _publish(broker, f"{PREFIX}/command", {"cmd": "open", "id": "a2"})
        reply = (await sub.next(f"{PREFIX}/reply")).json()
        assert (reply["ok"], reply["result"]["opened"], reply["result"]["reason"]) == (
            False,
            False,
            "relay blocked by tamper",
        )

    with LogWaiter("refused") as logs:
        async with (
            FakeApp() as other,
            Subscriber(broker.port, (f"{PREFIX}/#",)).running() as sub,
            running_link(link_config(broker.port), other),
        ):
            await sub.next(f"{PREFIX}/availability", payload="online")
            await _publish(broker, f"{PREFIX}/command", {"cmd": "open", "id": "b1"})
            reply = (await sub.next(f"{PREFIX}/reply")).json()
            assert reply["ok"] is False and reply["id"] == "b1"
            assert "disabled" in reply["error"]
            await logs.seen.wait()
            # a command sent to any other topic is not even read
            await _publish(broker, f"{PREFIX}/commands", {"cmd": "open", "id": "b2"})
            await _publish(broker, f"{PREFIX}/command", "not json")
            assert "JSON" in (await sub.next(f"{PREFIX}/reply")).json()["error"]
    assert other.opened == []
    assert any("command 'open' refused" in r.getMessage() for r in logs.records)


async def test_retained_command_is_never_run(broker: Mosquitto, app: FakeApp) -> None:
    # A retained "open" left on the broker would open the door at every reconnect.
    await _publish(broker, f"{PREFIX}/command", {"cmd": "open", "id": "r1"}, retain=True)
    config = link_config(broker.port, commands=MqttCommandsConfig(open=True, press=True))
    async with Subscriber(broker.port, (f"{PREFIX}/reply",)).running() as sub, running_link(config, app):
        reply = (await sub.next(f"{PREFIX}/reply")).json()
        assert reply["id"] == "r1" and reply["ok"] is False and "retained" in reply["error"]
        await _publish(broker, f"{PREFIX}/command", {"cmd": "press", "id": "p1", "button": "101"})
        reply = (await sub.next(f"{PREFIX}/reply")).json()
        assert reply["ok"] is True and reply["result"]["result"] == "started"
    assert app.opened == []
    assert app.pressed == [("101", "mqtt")]


async def _publish(broker: Mosquitto, topic: str, body: object, *, retain: bool = False) -> None:
    payload = body if isinstance(body, str) else json.dumps(body)
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.publish(topic, payload, qos=1, retain=retain)


async def test_home_assistant_restart_gets_discovery_again(broker: Mosquitto, app: FakeApp) -> None:
    async with (
        Subscriber(broker.port, ("homeassistant/event/#", f"{PREFIX}/availability")).running() as sub,
        running_link(link_config(broker.port), app),
    ):
        await sub.next(f"{PREFIX}/availability", payload="online")
        await sub.next("homeassistant/event/test/doorbell_101/config")
        await _publish(broker, "homeassistant/status", "online")  # Home Assistant's birth message
        again = await sub.next("homeassistant/event/test/doorbell_101/config")
        assert again.json()["event_types"] == ["press"]


async def test_clean_stop_says_offline_and_a_killed_panel_leaves_its_last_will(
    broker: Mosquitto, app: FakeApp, tmp_path: Path
) -> None:
    async with running_link(link_config(broker.port), app) as link:
        await until(lambda: link.health().connected)
    async with Subscriber(broker.port, (f"{PREFIX}/availability",)).running() as sub:
        assert (await sub.next(f"{PREFIX}/availability")).payload == "offline"  # retained, from the clean stop

    # A panel that dies without a word: the broker publishes the will it left at connect.
    script = tmp_path / "panel.py"
    script.write_text(PANEL_SCRIPT, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    async with Subscriber(broker.port, (f"{PREFIX}/availability",)).running() as sub:
        await sub.next(f"{PREFIX}/availability", payload="offline")
        async with await anyio.open_process([sys.executable, str(script), str(broker.port)], env=env) as panel:
            await sub.next(f"{PREFIX}/availability", payload="online", timeout=30)
            panel.kill()  # SIGKILL: no clean disconnect, no "offline" from the panel itself
            await sub.next(f"{PREFIX}/availability", payload="offline", timeout=30)


PANEL_SCRIPT = """
import sys, anyio
from tests.mqtt.fakes import FakeApp
from tests.mqtt.harness import link_config, running_link, until

async def main() -> None:
    async with FakeApp() as app, running_link(link_config(int(sys.argv[1])), app):
        await anyio.sleep_forever()

anyio.run(main)
"""
