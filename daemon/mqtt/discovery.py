"""Home Assistant MQTT discovery: one device per panel, its entities tied to the panel's availability.

Per-component discovery (``<discovery_prefix>/<component>/<panel-id>/<object-id>/config``, retained), the
schema Home Assistant documents for each platform: ``event`` (doorbell, ``event_types: [press]``; the
payload carries ``event_type``), ``button`` (commands, only those enabled), ``binary_sensor`` (door
contact, lock relay, tamper, registration), ``sensor`` (last visit, version). Entities of commands that are
not enabled get an empty retained config, which is how Home Assistant is told to remove an entity.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from daemon.mqtt.settings import MqttCommandsConfig, slug
from daemon.mqtt.topics import EventKind, Outgoing, StateName, Topics

__all__ = ["DiscoveryInput", "discovery_messages"]

ORIGIN = {"name": "pi-intercom"}


@dataclass(frozen=True)
class DiscoveryInput:
    panel_id: str
    panel_name: str
    version: str
    buttons: tuple[str, ...]
    commands: MqttCommandsConfig
    door_contact: bool
    qos: int
    tamper_switch: bool = True


def _press(cmd: str, **args: str) -> str:
    return json.dumps({"cmd": cmd, "id": "homeassistant", **args}, separators=(",", ":"))


def discovery_messages(topics: Topics, info: DiscoveryInput) -> list[Outgoing]:
    device = {
        "identifiers": [f"intercom_{info.panel_id}"],
        "name": info.panel_name,
        "manufacturer": "pi-intercom",
        "model": "Building intercom panel",
        "sw_version": info.version,
    }
    common = {
        "availability_topic": topics.availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
        "origin": {**ORIGIN, "sw_version": info.version},
        "qos": info.qos,
    }
    out: list[Outgoing] = []

    def entity(component: str, object_id: str, config: Mapping[str, object] | None) -> None:
        topic = topics.discovery(component, info.panel_id, object_id)
        if config is None:
            out.append(Outgoing(topic, "", retain=True))  # removes the entity, if Home Assistant had it
            return
        body = {**common, "unique_id": f"intercom_{info.panel_id}_{object_id}", **config}
        out.append(Outgoing.json(topic, body, retain=True))

    for button in info.buttons:
        entity(
            "event",
            f"doorbell_{slug(button)}",
            {
                "name": f"Doorbell {button}",
                "state_topic": topics.event(EventKind.DOORBELL, button),
                "event_types": ["press"],
                "device_class": "doorbell",
            },
        )
        entity(
            "button",
            f"press_{slug(button)}",
            {
                "name": f"Simulate press {button}",
                "command_topic": topics.command,
                "payload_press": _press("press", button=button),
                "icon": "mdi:doorbell",
            }
            if info.commands.press
            else None,
        )
    entity(
        "button",
        "open_door",
        {"name": "Open door", "command_topic": topics.command, "payload_press": _press("open"), "icon": "mdi:door-open"}
        if info.commands.open
        else None,
    )
    entity(
        "button",
        "hangup",
        {
            "name": "Hang up",
            "command_topic": topics.command,
            "payload_press": _press("hangup"),
            "icon": "mdi:phone-hangup",
        }
        if info.commands.hangup
        else None,
    )
    entity(
        "button",
        "reload",
        {
            "name": "Reload configuration",
            "command_topic": topics.command,
            "payload_press": _press("reload"),
            "entity_category": "config",
        }
        if info.commands.reload
        else None,
    )

    def binary(object_id: str, name: str, state: StateName, on: str, off: str, **extra: str) -> None:
        config = {"name": name, "state_topic": topics.state(state), "payload_on": on, "payload_off": off, **extra}
        entity("binary_sensor", object_id, config)

    binary("lock", "Door lock", StateName.RELAY, "unlocked", "locked", device_class="lock")  # on means unlocked
    if info.door_contact:
        binary("door", "Door", StateName.DOOR, "open", "closed", device_class="door")
    else:
        entity("binary_sensor", "door", None)
    if info.tamper_switch:
        binary("tamper", "Tamper", StateName.TAMPER, "triggered", "ok", device_class="tamper")
    else:
        entity("binary_sensor", "tamper", None)
    binary(
        "registration",
        "SIP registration",
        StateName.REGISTRATION,
        "up",
        "down",
        device_class="connectivity",
        entity_category="diagnostic",
    )
    last_visit = topics.state(StateName.LAST_VISIT)
    entity(
        "sensor",
        "last_visit",
        {
            "name": "Last visit",
            "state_topic": last_visit,
            "value_template": "{{ value_json.outcome }}",
            "json_attributes_topic": last_visit,
            "icon": "mdi:account-clock",
        },
    )
    entity(
        "sensor",
        "last_visit_at",
        {
            "name": "Last visit at",
            "state_topic": last_visit,
            "value_template": "{{ value_json.at }}",
            "device_class": "timestamp",
        },
    )
    versions = topics.state(StateName.VERSIONS)
    entity(
        "sensor",
        "version",
        {
            "name": "Version",
            "state_topic": versions,
            "value_template": "{{ value_json.intercom }}",
            "json_attributes_topic": versions,
            "entity_category": "diagnostic",
        },
    )
    return out
