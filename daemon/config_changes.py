"""What a reload changes: the new config compared with the one in force, key by key.

A setting is either applied live (to the next visit) or named as needing a restart; nothing is silently
ignored. Live: what the visit flow reads at each visit's start (apartments, codes, timing, prompts, the
panel's name). Everything the devices, the SIP engine or the file layout were built from at start needs a
restart: pins and the relay are claimed once, pjsua2's transport and account are created once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace

from daemon.config import Config

__all__ = ["LIVE_SECTIONS", "RESTART_SECTIONS", "changed_keys", "split_changes", "with_live_settings"]

LIVE_SECTIONS = frozenset(
    {
        "panel_name",
        "apartments",
        "inbound_codes",
        "inbound_door_codes",
        "timing",
        "prompts",
        "pins",
        "access",
        "directory",
    }
)
RESTART_SECTIONS = frozenset(
    {
        "gpio",
        "buttons",
        "relay",
        "exit_button",
        "door_contact",
        "tamper",
        "leds",
        "audio",
        "sip",
        "paths",
        "mqtt",
        "keypad",
        "doors",
    }
)


def changed_keys(old: object, new: object, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ (``relay.pulse_seconds``, ``sip.account.registrar``). Nested settings
    are compared field by field; lists and tables (apartments, buttons, prompt texts) as a whole."""
    if (
        dataclasses.is_dataclass(old)
        and dataclasses.is_dataclass(new)
        and type(old) is type(new)
        and not isinstance(old, type)
    ):
        out: list[str] = []
        for f in dataclasses.fields(old):
            out += changed_keys(getattr(old, f.name), getattr(new, f.name), f"{prefix}{f.name}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


def split_changes(old: Config, new: Config) -> tuple[list[str], list[str]]:
    """(applied live, needing a restart), as dotted keys. Both empty: nothing changed."""
    applied: list[str] = []
    restart: list[str] = []
    for key in changed_keys(old, new):
        section = key.split(".", 1)[0]
        (applied if section in LIVE_SECTIONS else restart).append(key)
    return applied, restart


def with_live_settings(running: Config, new: Config) -> Config:
    """The config in force after a reload: the running one with ``new``'s live sections."""
    return replace(running, **{name: getattr(new, name) for name in LIVE_SECTIONS})
