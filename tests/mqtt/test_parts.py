"""The MQTT link's pure parts, no broker: settings, event allowlist, outbox, back-off, discovery, commands."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio
import pytest

from daemon.facade import OpenResult
from daemon.mqtt import MqttCommandsConfig, MqttConfig, MqttLink, run_mqtt
from daemon.mqtt.commands import run_command
from daemon.mqtt.discovery import DiscoveryInput, discovery_messages
from daemon.mqtt.link import _backoff
from daemon.mqtt.outbox import Outbox
from daemon.mqtt.payloads import EventTranslator
from daemon.mqtt.settings import slug
from daemon.mqtt.state import StateTracker
from daemon.mqtt.topics import Outgoing, StateName, Topics
from daemon.settings_schema import build
from tests.mqtt.fakes import FakeApp

TOPICS = Topics("intercom/p1")
ROOT = Path(__file__).resolve().parents[2]


def _build(data: dict[str, object]) -> tuple[MqttConfig | None, list[str]]:
    problems: list[str] = []
    return build(MqttConfig, data, problems, "mqtt"), problems


def test_settings_defaults_derive_names_from_the_panel() -> None:
    config, problems = _build({"host": "broker.lan"})
    assert problems == [] and config is not None
    names = config.resolve("Portão Sul")
    assert (names.panel_id, names.client_id, names.topic_prefix) == (
        "portao_sul",
        "intercom-portao_sul",
        "intercom/portao_sul",
    )
    assert config.broker_port == 1883
    assert config.commands.enabled() == frozenset()  # every command is off until enabled
    tls, _ = _build({"tls": {"enabled": True}})
    assert tls is not None and tls.broker_port == 8883


def test_settings_report_every_problem_at_once() -> None:
    _, problems = _build(
        {
            "host": "",
            "port": 70000,
            "password_file": "/etc/intercom/mqtt.pw",
            "panel_id": "Portão",
            "topic_prefix": "intercom/#",
            "qos": 3,
            "keepalive_seconds": 1,
            "queue_size": 0,
            "tls": {"ca_file": "/ca.pem", "cert_file": "/c.pem"},
            "commands": {"open": "yes"},
        }
    )
    text = "\n".join(problems)
    assert "mqtt.qos: 3 is not accepted; accepted: 0, 1, 2" in text
    assert "mqtt.commands.open: expected true or false" in text
    # Numbers out of their declared range are refused by the loader, every one named...
    _, problems = _build({"port": 70000, "keepalive_seconds": 1, "queue_size": 0})
    text = "\n".join(problems)
    for expected in (
        "mqtt.port: 70000 out of range",
        "keepalive_seconds: 1 out of range",
        "queue_size: 0 out of range",
    ):
        assert expected in text
    # ... and the section's own checks run once every field has a usable value.
    _, problems = _build({"host": "", "password_file": "/pw", "panel_id": "Portão", "topic_prefix": "intercom/#"})
    text = "\n".join(problems)
    for expected in (
        "mqtt: host: must not be empty",
        "password_file is given without username",
        "panel_id: 'Portão' must be [a-z0-9_-] only, e.g. 'portao'",
        "topic_prefix: 'intercom/#' is not a topic prefix",
    ):
        assert expected in text
    _, problems = _build({"tls": {"ca_file": "/ca.pem", "cert_file": "/c.pem"}})
    assert problems == [
        "mqtt.tls: ca_file/cert_file/key_file are given but enabled is false; set enabled = true",
        "mqtt.tls: cert_file and key_file: give both or neither",
    ]


def test_slug() -> None:
    assert slug("Portão") == "portao"
    assert slug("Bloco B / Garagem #2") == "bloco_b_garagem_2"
    assert slug("+#/") == "panel"


def _event(name: str, visit: str = "-", target: str = "", text: str = "", **extra: object) -> dict[str, object]:
    return {"event": name, "visit": visit, "target": target, "text": text, "timestamp": "t", **extra}


def test_translator_publishes_allowlisted_fields_only_and_never_keypad_events() -> None:
    translator = EventTranslator(TOPICS)
    for keypad in ("DTMF", "DTMF_IGNORED", "CODE_ACCEPTED", "CODE_REJECTED", "LOCKOUT", "PLAYBACK_START", "RINGING"):
        assert translator.translate(_event(keypad, "v1", "sip:r@h", "rfc2833: 4711", code="4711")).message is None
    press = translator.translate(
        _event("BUTTON_PRESSED", "v1", "101", "started", apartment="101", code="4711", pin="1", secret="x")
    )
    assert press.message is not None
    assert press.message.topic == "intercom/p1/event/doorbell/101"
    assert json.loads(press.message.payload) == {
        "event_type": "press",
        "button": "101",
        "apartment": "101",
        "result": "started",
        "at": "t",
        "visit": "v1",
    }
    translator.translate(_event("ANSWERED", "v1", "sip:r@h", elapsed_seconds=4.5))
    opened = translator.translate(_event("DOOR_OPEN", "v1", "sip:r@h", "code 4711 accepted", digits="4711"))
    assert opened.message is not None and "4711" not in opened.message.payload
    outcome = translator.translate(_event("OUTCOME", "v1", "101", "door_opened", detail="", elapsed_seconds=9.25))
    assert outcome.message is not None and outcome.last_visit is not None
    body = json.loads(outcome.message.payload)
    assert body["answered_by"] == "sip:r@h" and body["ring_seconds"] == 4.5 and body["duration_seconds"] == 9.25
    assert body["door_opened"] is True and body["button"] == "101"


@pytest.mark.parametrize(
    ("name", "text", "extra", "kind", "field", "value"),
    [
        ("DOOROPENED", "", {}, "door", "action", "opened"),
        ("DOOR_CLOSED", "", {}, "door", "action", "closed"),
        ("DOORHELDOPEN", "opened_at=1.0", {}, "door", "action", "held_open"),
        ("DOOR_OPEN_REFUSED", "relay blocked by tamper", {}, "door", "reason", "relay blocked by tamper"),
        ("EXITREQUESTED", "opened=False", {}, "door", "action", "refused"),
        ("EXITREQUESTED", "opened=True", {}, "door", "action", "unlocked"),
        ("TAMPERTRIGGERED", "", {}, "tamper", "state", "triggered"),
        ("TAMPER_CLEARED", "", {}, "tamper", "state", "cleared"),
        ("PIN_ALARM", "10 wrong PINs since the last good one", {}, "tamper", "state", "alarm"),
        ("REGISTRATION_DOWN", "408 timeout", {}, "registration", "state", "down"),
        ("REGISTRATION", "200 OK", {"active": True}, "registration", "state", "up"),
        ("RELAY_FAULT", "pin failed", {}, "fault", "what", "relay_fault"),
    ],
)
def test_translator_kinds(name: str, text: str, extra: dict[str, object], kind: str, field: str, value: str) -> None:
    translated = EventTranslator(TOPICS).translate(_event(name, "-", "", text, **extra))
    assert translated.message is not None
    assert translated.message.topic == f"intercom/p1/event/{kind}"
    assert json.loads(translated.message.payload)[field] == value


def test_state_is_derived_from_status_and_republished_only_when_changed() -> None:
    tracker = StateTracker(TOPICS)
    status: dict[str, object] = {
        "version": "1.2",
        "registration": {"active": True},
        "relay": {"energized": False},
        "door": None,
    }
    assert tracker.update(status)
    pending = dict(tracker.pending())
    assert pending[StateName.RELAY].payload == "locked" and pending[StateName.RELAY].retain
    assert StateName.DOOR not in pending and not tracker.door_contact  # no door contact on this panel
    for name, message in tracker.pending():
        tracker.published(name, message.payload)
    assert not tracker.update(status)  # nothing changed: nothing to publish
    tamper = EventTranslator(TOPICS).translate(_event("TAMPERTRIGGERED"))
    assert tracker.update(status, tamper)
    assert [(n, m.payload) for n, m in tracker.pending()] == [(StateName.TAMPER, "triggered")]
    tracker.forget_published()
    assert len(tracker.pending()) == 4  # a new connection: everything again
    assert tracker.tamper_switch  # status says nothing of a tamper switch: assume one, from events
    tracker.update({**status, "tamper": None})  # the app says there is none
    assert not tracker.tamper_switch and StateName.TAMPER not in dict(tracker.pending())


def test_outbox_drops_oldest_beyond_its_bound_and_acknowledges_by_sequence() -> None:
    box = Outbox(3)
    for i in range(5):
        box.put(Outgoing("t", str(i)))
    assert (len(box), box.dropped) == (3, 2)
    batch = box.head(10)
    assert [m.payload for _, m in batch] == ["2", "3", "4"]
    for i in range(5, 7):  # while the batch is out, two more arrive and push two of the batch out
        box.put(Outgoing("t", str(i)))
    box.done(batch[-1][0])
    assert [m.payload for _, m in box.head(10)] == ["5", "6"]  # never the unsent ones


def test_backoff_grows_to_its_ceiling_with_jitter() -> None:
    first = [_backoff(1, 1.0, 60.0) for _ in range(50)]
    assert all(0.5 <= d <= 1.0 for d in first) and len(set(first)) > 1
    assert all(30.0 <= _backoff(30, 1.0, 60.0) <= 60.0 for _ in range(50))


def _discovery(commands: MqttCommandsConfig, door_contact: bool = True, tamper: bool = True) -> dict[str, str]:
    info = DiscoveryInput("p1", "Portão", "1.2", ("101", "Bloco B"), commands, door_contact, 1, tamper)
    return {m.topic: m.payload for m in discovery_messages(TOPICS, info)}


def test_discovery_entities_follow_the_enabled_commands() -> None:
    off = _discovery(MqttCommandsConfig(), door_contact=False, tamper=False)
    assert off["homeassistant/button/p1/open_door/config"] == ""  # removed from Home Assistant
    assert off["homeassistant/binary_sensor/p1/door/config"] == ""
    assert off["homeassistant/binary_sensor/p1/tamper/config"] == ""
    bell = json.loads(off["homeassistant/event/p1/doorbell_bloco_b/config"])
    assert bell["state_topic"] == "intercom/p1/event/doorbell/bloco_b"
    assert bell["name"] == "Doorbell Bloco B"
    on = _discovery(MqttCommandsConfig(open=True, press=True))
    opener = json.loads(on["homeassistant/button/p1/open_door/config"])
    assert json.loads(opener["payload_press"]) == {"cmd": "open", "id": "homeassistant"}
    press = json.loads(on["homeassistant/button/p1/press_101/config"])
    assert json.loads(press["payload_press"])["button"] == "101"
    for topic, payload in on.items():
        if payload:
            config = json.loads(payload)
            assert config["availability_topic"] == "intercom/p1/availability", topic
            assert config["unique_id"].startswith("intercom_p1_"), topic
            assert config["device"]["identifiers"] == ["intercom_p1"], topic


async def test_commands_are_checked_before_anything_runs() -> None:
    async with FakeApp() as app:
        everything = MqttCommandsConfig(open=True, press=True, dial=True, hangup=True, reload=True).enabled()

        async def run(body: object, enabled: frozenset[str] = everything, retained: bool = False) -> dict[str, object]:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            return await run_command(app, enabled, payload, retained=retained)

        assert "disabled" in str((await run({"cmd": "reload"}, frozenset()))["error"])
        assert "unknown command" in str((await run({"cmd": "format"}))["error"])
        assert "JSON" in str((await run(b"\xff\xfe"))["error"])
        assert "JSON" in str((await run(["open"]))["error"])
        assert "longer than" in str((await run(b"{" + b" " * 5000 + b"}"))["error"])
        assert "no button" in str((await run({"cmd": "press", "button": "999"}))["error"])
        assert "'uri' must be" in str((await run({"cmd": "dial"}))["error"])
        assert (app.pressed, app.dialed, app.reloads, app.opened) == ([], [], 0, [])
        assert (await run({"cmd": "dial", "uri": "sip:101@pbx", "id": 7}))["result"] == {"call": "call-1"}
        assert (await run({"cmd": "hangup"}))["ok"] is True and app.hangups == 1
        reload = await run({"cmd": "reload", "id": "r"})
        assert reload["ok"] is True and reload["id"] == "r" and app.reloads == 1
        app.open_result = OpenResult(False, "relay fault")
        refused = await run({"cmd": "open"})
        assert refused["ok"] is False and refused["result"] == {"opened": False, "reason": "relay fault"}


async def test_a_failing_app_status_does_not_stop_the_event_flow() -> None:
    class BrokenStatus(FakeApp):
        def status(self) -> dict[str, object]:
            raise RuntimeError("a bug in status")

    async with BrokenStatus() as app:
        link = MqttLink(MqttConfig(), app, panel_name="P")
        link.on_event(_event("BUTTON_PRESSED", "v1", "101"))
        link.on_event({"event": "BUTTON_PRESSED", "target": 5, "visit": None, "timestamp": 0})  # odd shapes
        assert link.health().queued == 2


async def test_an_unreadable_password_file_leaves_the_panel_running(tmp_path: Path) -> None:
    config = MqttConfig(username="panel", password_file=str(tmp_path / "missing"))
    async with FakeApp() as app, anyio.create_task_group() as tg:
        link: MqttLink = await tg.start(partial(run_mqtt, config, app, panel_name="P"))
        assert "not started" in link.health().detail and "cannot read" in link.health().detail
        assert not link.health().connected


@dataclass(frozen=True)
class _ConfigWithMqtt:
    """The shape daemon.config.Config takes with its ``mqtt: MqttConfig | None = None`` field."""

    panel_name: str = "Portão"
    mqtt: MqttConfig | None = None


def test_the_documented_example_is_a_valid_mqtt_section() -> None:
    doc = (ROOT / "docs" / "mqtt.md").read_text(encoding="utf-8")
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    problems: list[str] = []
    config = build(_ConfigWithMqtt, tomllib.loads(example), problems)
    assert problems == [] and config is not None and config.mqtt is not None
    assert config.mqtt.tls.enabled and config.mqtt.commands.enabled() == frozenset({"open"})
    assert config.mqtt.resolve(config.panel_name).topic_prefix == "intercom/portao_norte"
    without: list[str] = []
    assert build(_ConfigWithMqtt, {}, without) == _ConfigWithMqtt() and without == []  # no [mqtt]: no MQTT


def test_a_door_open_names_its_door() -> None:
    translated = EventTranslator(TOPICS).translate(_event("DOOR_OPEN", "-", "cleaner", "garage opened", door="garage"))
    assert translated.message is not None
    assert json.loads(translated.message.payload)["door"] == "garage"
