"""The app's events (``app.events()`` dicts) as MQTT event messages, by an allowlist.

Each published kind is built field by field from what it may say; nothing is passed through. Keypad
events (DTMF, codes, lockouts) are never published at all, so neither a digit nor anything derived from
a code can reach the broker, whatever the event log's masking does. Event names are matched with and
without underscores (``DOOR_OPENED`` and the hw-derived ``DOOROPENED`` are the same fact).

A visit's outcome message gathers what the visit's earlier events said (which button, who answered and
after how long, whether the door opened), so one message tells the whole visit.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from daemon.mqtt.topics import EventKind, Outgoing, Topics

__all__ = ["EventTranslator", "Translated"]

_NO_VISIT = frozenset({"", "-"})
_TRACKED_VISITS = 16  # visits whose outcome is still to come; more at once than this is not a real panel


@dataclass(frozen=True)
class Translated:
    """What one app event means here: a message to publish and the state facts it changes."""

    message: Outgoing | None = None
    tamper: bool | None = None  # True triggered, False cleared
    registration: bool | None = None  # True up, False down
    last_visit: dict[str, object] | None = None


@dataclass
class _VisitNotes:
    button: str = ""
    answered_by: str = ""
    ring_seconds: float | None = None
    door_opened: bool = False


def _text(event: Mapping[str, object], key: str) -> str:
    value = event.get(key)
    return value if isinstance(value, str) else ""


def _number(event: Mapping[str, object], key: str) -> float | None:
    value = event.get(key)
    return round(float(value), 3) if isinstance(value, int | float) and not isinstance(value, bool) else None


class EventTranslator:
    def __init__(self, topics: Topics) -> None:
        self._topics = topics
        self._visits: OrderedDict[str, _VisitNotes] = OrderedDict()

    def translate(self, event: Mapping[str, object]) -> Translated:
        name = _text(event, "event").upper()
        key = name.replace("_", "")
        visit = _text(event, "visit")
        base: dict[str, object] = {"at": _text(event, "timestamp")}
        if door := _text(event, "door"):  # which door, on a panel with [[doors]] (opens outside a visit say it)
            base["door"] = door
        if visit not in _NO_VISIT:
            base["visit"] = visit
        target, text = _text(event, "target"), _text(event, "text")
        match key:
            case "BUTTONPRESSED":
                if visit not in _NO_VISIT:
                    self._notes(visit).button = target
                apartment = _text(event, "apartment")
                body: dict[str, object] = {"event_type": "press", "button": target, "apartment": apartment}
                body.update(result=text, **base)
                return Translated(Outgoing.json(self._topics.event(EventKind.DOORBELL, target), body))
            case "ANSWERED":
                notes = self._notes(visit)
                notes.answered_by, notes.ring_seconds = target, _number(event, "elapsed_seconds")
                return Translated()
            case "DOOROPEN":
                if visit not in _NO_VISIT:
                    self._notes(visit).door_opened = True
                return self._door("unlocked", base, by=target or "panel")
            case "DOOROPENREFUSED":
                return self._door("refused", base, by=target or "panel", reason=text)
            case "EXITREQUESTED":
                refused = "opened=False" in text.replace(" ", "")
                return self._door("refused" if refused else "unlocked", base, by="exit button")
            case "DOOROPENED":
                return self._door("opened", base)
            case "DOORCLOSED":
                return self._door("closed", base)
            case "DOORHELDOPEN":
                return self._door("held_open", base)
            case "TAMPER" | "TAMPERTRIGGERED" | "TAMPERCLEARED":
                triggered = key != "TAMPERCLEARED"
                state: dict[str, object] = {"state": "triggered" if triggered else "cleared", **base}
                return Translated(Outgoing.json(self._topics.event(EventKind.TAMPER), state), tamper=triggered)
            case "PINALARM":
                # Wrong PINs at the keypad: an alarm on the tamper topic, without changing the tamper switch's state.
                alarm: dict[str, object] = {"state": "alarm", "what": "pin_brute_force", "detail": text, **base}
                return Translated(Outgoing.json(self._topics.event(EventKind.TAMPER), alarm))
            case "OUTCOME":
                return self._outcome(event, visit, base)
        if key.startswith("REGISTRATION"):
            return self._registration(event, key, base)
        if key in ("FAULT", "ERROR") or key.endswith("FAULT"):
            body = {"what": name.lower(), "detail": text, **base}
            return Translated(Outgoing.json(self._topics.event(EventKind.FAULT), body))
        return Translated()  # keypad input, playback, ringing...: not for the broker

    def _notes(self, visit: str) -> _VisitNotes:
        notes = self._visits.get(visit)
        if notes is None:
            notes = self._visits[visit] = _VisitNotes()
            while len(self._visits) > _TRACKED_VISITS:
                self._visits.popitem(last=False)
        return notes

    def _door(self, action: str, base: dict[str, object], *, by: str = "", reason: str = "") -> Translated:
        body: dict[str, object] = {"action": action, **base}
        if by:
            body["by"] = by
        if reason:
            body["reason"] = reason
        return Translated(Outgoing.json(self._topics.event(EventKind.DOOR), body))

    def _registration(self, event: Mapping[str, object], key: str, base: dict[str, object]) -> Translated:
        active = event.get("active")
        text = _text(event, "text")
        if not isinstance(active, bool):
            word = key.removeprefix("REGISTRATION") or text.split(" ", 1)[0].upper()
            if word not in ("UP", "DOWN"):
                return Translated()
            active = word == "UP"
        body = {"state": "up" if active else "down", "registrar": _text(event, "target"), "detail": text, **base}
        return Translated(Outgoing.json(self._topics.event(EventKind.REGISTRATION), body), registration=active)

    def _outcome(self, event: Mapping[str, object], visit: str, base: dict[str, object]) -> Translated:
        notes = self._visits.pop(visit, None) or _VisitNotes()
        outcome = _text(event, "text")
        body: dict[str, object] = {
            "apartment": _text(event, "target"),
            "button": notes.button,
            "outcome": outcome,
            "detail": _text(event, "detail"),
            "answered_by": notes.answered_by,
            "door_opened": notes.door_opened or outcome == "door_opened",
            "ring_seconds": notes.ring_seconds,
            "duration_seconds": _number(event, "elapsed_seconds"),
            **base,
        }
        return Translated(Outgoing.json(self._topics.event(EventKind.VISIT), body), last_visit=body)
