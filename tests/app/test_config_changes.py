"""What a reload applies live and what it names as needing a restart (pure: two configs compared)."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

from daemon.config import Config, default_config_text, parse_config
from daemon.config_changes import LIVE_SECTIONS, RESTART_SECTIONS, split_changes, with_live_settings

BASE = parse_config(default_config_text())


def test_every_section_is_either_live_or_restart_only() -> None:
    # A new config section must be classified here, or a reload would report it wrongly.
    assert {f.name for f in dataclasses.fields(Config)} == LIVE_SECTIONS | RESTART_SECTIONS
    assert not LIVE_SECTIONS & RESTART_SECTIONS


def test_changes_are_named_by_dotted_key_and_split() -> None:
    new = replace(
        BASE,
        relay=replace(BASE.relay, pulse_seconds=BASE.relay.pulse_seconds + 1),
        sip=replace(BASE.sip, port=BASE.sip.port + 1),
        timing=replace(BASE.timing, ring_timeout_seconds=7),
        prompts=replace(BASE.prompts, text={"waiting": "Hold on."}),
    )
    applied, restart = split_changes(BASE, new)
    assert applied == ["timing.ring_timeout_seconds", "prompts.text"]
    assert restart == ["relay.pulse_seconds", "sip.port"]
    assert split_changes(BASE, BASE) == ([], [])


def test_the_config_in_force_takes_only_the_live_sections() -> None:
    new = replace(BASE, relay=replace(BASE.relay, pulse_seconds=9), apartments=BASE.apartments[:1], panel_name="X")
    in_force = with_live_settings(BASE, new)
    assert in_force.relay == BASE.relay
    assert (in_force.apartments, in_force.panel_name) == (BASE.apartments[:1], "X")
