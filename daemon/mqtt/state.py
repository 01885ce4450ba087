"""The panel's retained state, derived from ``app.status()`` each time an event arrives (no polling timer).

Only what changed since the broker last acknowledged it is published again; after a reconnect everything
is (a broker restarted without persistence has forgotten its retained messages).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from daemon.mqtt.payloads import Translated
from daemon.mqtt.topics import Outgoing, StateName, Topics

__all__ = ["StateTracker"]


class StateTracker:
    def __init__(self, topics: Topics) -> None:
        self._topics = topics
        self._current: dict[StateName, str] = {}
        self._published: dict[StateName, str] = {}
        self._tamper = False
        self._registration: bool | None = None
        self._last_visit: dict[str, object] | None = None

    @property
    def door_contact(self) -> bool:
        """Whether the panel reports a door contact (then Home Assistant gets a door sensor)."""
        return StateName.DOOR in self._current

    @property
    def tamper_switch(self) -> bool:
        """Whether the panel has a tamper switch (status ``"tamper": None`` says it has none)."""
        return StateName.TAMPER in self._current

    def update(self, status: Mapping[str, object], facts: Translated | None = None) -> bool:
        """Take the app's status and an event's facts; True if some state now differs from the broker's."""
        if facts is not None:
            self._tamper = self._tamper if facts.tamper is None else facts.tamper
            self._registration = self._registration if facts.registration is None else facts.registration
            self._last_visit = facts.last_visit or self._last_visit
        current: dict[StateName, str] = {}
        registration = status.get("registration")
        if isinstance(registration, Mapping) and isinstance(registration.get("active"), bool):
            current[StateName.REGISTRATION] = "up" if registration["active"] else "down"
        elif self._registration is not None:
            current[StateName.REGISTRATION] = "up" if self._registration else "down"
        relay = status.get("relay")
        if isinstance(relay, Mapping) and isinstance(relay.get("energized"), bool):
            current[StateName.RELAY] = "unlocked" if relay["energized"] else "locked"
        door = status.get("door")
        if door in ("open", "closed"):
            current[StateName.DOOR] = str(door)
        tamper = status.get("tamper", self._tamper)
        if isinstance(tamper, bool):
            current[StateName.TAMPER] = "triggered" if tamper else "ok"
        elif tamper in ("triggered", "ok"):
            current[StateName.TAMPER] = str(tamper)
        if self._last_visit is not None:
            current[StateName.LAST_VISIT] = _json(self._last_visit)
        current[StateName.VERSIONS] = _json(_versions(status))
        self._current = current
        return bool(self.pending())

    def pending(self) -> list[tuple[StateName, Outgoing]]:
        return [
            (name, Outgoing(self._topics.state(name), payload, retain=True))
            for name, payload in self._current.items()
            if self._published.get(name) != payload
        ]

    def published(self, name: StateName, payload: str) -> None:
        self._published[name] = payload

    def forget_published(self) -> None:
        """A new connection: publish everything again."""
        self._published.clear()


def _versions(status: Mapping[str, object]) -> dict[str, object]:
    out: dict[str, object] = {"intercom": str(status.get("version", ""))}
    extra = status.get("versions")
    if isinstance(extra, Mapping):
        out.update({str(k): str(v) for k, v in extra.items()})
    return out


def _json(body: Mapping[str, object]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)
