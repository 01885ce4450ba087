"""The panel's MQTT topics and the message type every part hands to the publisher.

Under the prefix (default ``intercom/<panel-id>``)::

    availability            online / offline, retained (offline is also the last will)
    event/<kind>            one JSON message per event, not retained (doorbell: event/doorbell/<button>)
    state/<name>            retained; republished when it changes
    command                 JSON commands in ({"cmd": "open", "id": "..."})
    reply                   one JSON answer per command out
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from daemon.mqtt.settings import slug

__all__ = ["EventKind", "Outgoing", "StateName", "Topics"]


class EventKind(StrEnum):
    DOORBELL = "doorbell"
    VISIT = "visit"
    DOOR = "door"
    TAMPER = "tamper"
    REGISTRATION = "registration"
    FAULT = "fault"


class StateName(StrEnum):
    REGISTRATION = "registration"
    RELAY = "relay"
    DOOR = "door"
    TAMPER = "tamper"
    LAST_VISIT = "last_visit"
    VERSIONS = "versions"


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: str
    retain: bool = False

    @classmethod
    def json(cls, topic: str, body: dict[str, object], *, retain: bool = False) -> Outgoing:
        return cls(topic, json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str), retain)


@dataclass(frozen=True)
class Topics:
    prefix: str
    discovery_prefix: str = "homeassistant"

    @property
    def availability(self) -> str:
        return f"{self.prefix}/availability"

    @property
    def command(self) -> str:
        return f"{self.prefix}/command"

    @property
    def reply(self) -> str:
        return f"{self.prefix}/reply"

    @property
    def ha_status(self) -> str:
        """Home Assistant's birth/will topic: on its "online" the discovery messages are sent again."""
        return f"{self.discovery_prefix}/status"

    def event(self, kind: EventKind, sub: str = "") -> str:
        return f"{self.prefix}/event/{kind.value}" + (f"/{slug(sub)}" if sub else "")

    def state(self, name: StateName) -> str:
        return f"{self.prefix}/state/{name.value}"

    def discovery(self, component: str, panel_id: str, object_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/{panel_id}/{object_id}/config"
