"""The whole configuration (:class:`Config`) and the checks that span its sections."""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property

from daemon.access import PinBook
from daemon.config._access import AccessConfig, PinConfig
from daemon.config._sip import WIDE_PREFIX, SipConfig
from daemon.config._uris import dial_problems
from daemon.config._visit import Apartment, KeypadSettings, PathsConfig, PromptsConfig, TimingConfig, code_problems
from daemon.mqtt.settings import MqttConfig
from hw.settings import (
    MAIN_DOOR,
    AudioConfig,
    ButtonConfig,
    DoorConfig,
    DoorContactConfig,
    GpioConfig,
    InputConfig,
    LedConfig,
    PanelConfig,
    RelayConfig,
    TamperConfig,
)

__all__ = ["Config", "config_warnings"]

_LED_NAMES = ("status", "fault")


@dataclass(frozen=True)
class Config:
    panel_name: str = "Portão"
    gpio: GpioConfig = field(default_factory=GpioConfig)
    buttons: tuple[ButtonConfig, ...] = ()
    relay: RelayConfig = field(default_factory=RelayConfig)
    exit_button: InputConfig | None = None
    door_contact: DoorContactConfig | None = None
    tamper: TamperConfig | None = None
    leds: dict[str, LedConfig] = field(default_factory=dict)  # "status", "fault"
    audio: AudioConfig = field(default_factory=AudioConfig)
    sip: SipConfig = field(default_factory=SipConfig)
    timing: TimingConfig = field(default_factory=TimingConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    apartments: tuple[Apartment, ...] = ()
    inbound_codes: tuple[str, ...] = ()  # codes an allowlisted inbound caller (the concierge) may open with
    inbound_door_codes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # theirs for the other doors
    doors: tuple[DoorConfig, ...] = ()  # [[doors]]; absent: one door, "main", from relay/exit_button/door_contact
    paths: PathsConfig = field(default_factory=PathsConfig)
    mqtt: MqttConfig | None = None  # [mqtt] (docs/mqtt.md); absent: no MQTT
    keypad: KeypadSettings | None = None  # [keypad]; absent: a button panel
    access: AccessConfig = field(default_factory=AccessConfig)  # [access]: the salt, the PIN guard's limits
    pins: tuple[PinConfig, ...] = ()  # [[pins]]: access PINs typed at the keypad (hashed)
    # A CSV of apartments merged with [[apartments]] (daemon.config._directory); relative: to the config file.
    directory: str = ""

    @property
    def panel(self) -> PanelConfig:
        """The panel's device settings, as hw/ takes them."""
        return PanelConfig(
            buttons=self.buttons,
            relay=self.relay,
            exit_button=self.exit_button,
            door_contact=self.door_contact,
            tamper=self.tamper,
            leds=self.leds,
            audio=self.audio,
            keypad=self.keypad,
            doors=self.doors,
        )

    @property
    def door_names(self) -> tuple[str, ...]:
        """Every door's name, the first being the one ``codes`` and ``intercomctl open`` open by default."""
        return tuple(door.name for door in self.doors) or (MAIN_DOOR,)

    def problems(self) -> list[str]:
        inbound = self.inbound_codes + tuple(c for codes in self.inbound_door_codes.values() for c in codes)
        out = code_problems("inbound_codes", inbound)
        out += self._door_problems()
        out += self._pin_problems_access()
        out += self._pin_problems()
        out += self._button_problems()
        for i, apt in enumerate(self.apartments):
            out += self._apartment_problems(f"apartments[{i}]", apt)
        if not self.apartments and not self.directory:  # the directory's are checked once merged
            out.append("apartments: at least one apartment is required")
        if self.keypad is not None:
            longest = max((len(a.number) for a in self.apartments), default=0)
            if longest > self.keypad.max_number_digits:
                out.append(
                    f"keypad.max_number_digits: {self.keypad.max_number_digits}, but an apartment's number has "
                    f"{longest} digits: nobody could type it"
                )
        return out

    def apartment_for_button(self, button: str) -> Apartment | None:
        return next((a for a in self.apartments if button in a.buttons), None)

    def apartment_for_number(self, number: str) -> Apartment | None:
        """The apartment a keypad number calls: one dict lookup (a directory may hold thousands)."""
        return self._by_number.get(number)

    @cached_property
    def _by_number(self) -> dict[str, Apartment]:
        # Built once per Config (a frozen value: a reload makes a new one). cached_property writes the instance's
        # __dict__ directly, which a frozen dataclass allows.
        return {apt.number: apt for apt in self.apartments if apt.number}

    def _pin_problems(self) -> list[str]:
        out: list[str] = []
        pins: dict[int, str] = {}  # pin -> the key that claimed it first

        def claim(pin: int, key: str) -> None:
            if pin in pins:
                out.append(f"{key}: GPIO {pin} is already used by {pins[pin]}")
            else:
                pins[pin] = key

        for i, b in enumerate(self.buttons):
            claim(b.pin, f"buttons[{i}].pin")
        prefix = {door.name: f"doors[{i}]." for i, door in enumerate(self.doors)}
        for door in self.panel.door_list:
            key = prefix.get(door.name, "")
            claim(door.relay.pin, f"{key}relay.pin")
            for what, dev in (("exit_button", door.exit_button), ("door_contact", door.door_contact)):
                if dev is not None:
                    claim(dev.pin, f"{key}{what}.pin")
        if self.tamper is not None:
            claim(self.tamper.pin, "tamper.pin")
        if self.keypad is not None:
            for key, pin in self.keypad.pins():
                claim(pin, key)
        for name, led in self.leds.items():
            if name not in _LED_NAMES:
                out.append(f"leds.{name}: unknown LED; accepted: {', '.join(_LED_NAMES)}")
            claim(led.pin, f"leds.{name}.pin")
        return out

    @cached_property
    def pin_book(self) -> PinBook:
        """Every access PIN, found by its hash (built once per Config; a reload makes a new one)."""
        first = self.door_names[0]
        return PinBook(self.access.salt, tuple(pin.access_pin(first) for pin in self.pins))

    def _pin_problems_access(self) -> list[str]:
        if not self.pins:
            return []
        out: list[str] = []
        if not self.access.salt:
            out.append("access.salt: required with [[pins]] (the salt their hashes were made with)")
        if self.keypad is None:
            out.append("pins: access PINs need a [keypad] to be typed on")
        labels = [pin.label for pin in self.pins]
        for dup in sorted({n for n in labels if labels.count(n) > 1}):
            out.append(f"pins: the label {dup!r} is used twice (it says who opened)")
        first: dict[str, int] = {}
        for i, pin in enumerate(self.pins):
            for door in pin.doors:
                if door not in self.door_names:
                    out.append(f"pins[{i}].doors: no door named {door!r}; doors: {', '.join(self.door_names)}")
            if pin.pin_hash in first:
                out.append(f"pins[{i}]: the same PIN as pins[{first[pin.pin_hash]}]: give each its own")
            first.setdefault(pin.pin_hash, i)
        return out

    def _door_problems(self) -> list[str]:
        out: list[str] = []
        if self.doors and (self.relay != RelayConfig() or self.exit_button or self.door_contact):
            out.append(
                "doors: with [[doors]], give each door its own relay, exit_button and door_contact; "
                "remove [relay], [exit_button] and [door_contact]"
            )
        for door in self.prompts.doors:
            if door not in self.door_names:
                out.append(f"prompts.doors.{door}: no door named {door!r}; doors: {', '.join(self.door_names)}")
        names = [door.name for door in self.doors]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            out.append(f"doors: the name {dup!r} is used twice")
        known = self.door_names
        tables = [(f"apartments[{i}].door_codes", apt.door_codes) for i, apt in enumerate(self.apartments)]
        for key, table in [*tables, ("inbound_door_codes", self.inbound_door_codes)]:
            for door in table:
                if door not in known:
                    out.append(f"{key}.{door}: no door named {door!r}; doors: {', '.join(known)}")
                elif door == known[0]:
                    out.append(f"{key}.{door}: the first door's codes go in the plain codes list")
        return out

    def _button_problems(self) -> list[str]:
        out: list[str] = []
        names = [b.name for b in self.buttons]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            out.append(f"buttons: the name {dup!r} is used twice")
        # A Counter, not list.count: a directory brings thousands of apartments.
        apt_names = Counter(a.name for a in self.apartments)
        for dup in sorted(n for n, count in apt_names.items() if count > 1):
            out.append(f"apartments: the name {dup!r} is used twice")
        numbers: dict[str, int] = {}  # keypad number -> the first apartment's index
        for i, apt in enumerate(self.apartments):
            if apt.number and apt.number in numbers:
                out.append(f"apartments[{i}].number: {apt.number!r} is already apartments[{numbers[apt.number]}]'s")
            elif apt.number:
                numbers[apt.number] = i
        owner: dict[str, str] = {}  # button -> the apartment it rings
        for i, apt in enumerate(self.apartments):
            for button in apt.buttons:
                if button not in names:
                    out.append(f"apartments[{i}].buttons: no button named {button!r}; defined: {names}")
                elif button in owner:
                    out.append(f"apartments[{i}].buttons: {button!r} already rings apartment {owner[button]!r}")
                else:
                    owner[button] = apt.name
        for i, b in enumerate(self.buttons):
            if self.apartments and b.name not in owner:
                out.append(
                    f"buttons[{i}]: {b.name!r} rings no apartment (a visitor pressing it hears nothing); "
                    "add it to an apartment's buttons or remove it"
                )
        return out

    def _apartment_problems(self, key: str, apt: Apartment) -> list[str]:
        out: list[str] = []
        transport = self.sip.transport
        for i, uri in enumerate(apt.residents):
            out += dial_problems(f"{key}.residents[{i}]", uri, transport)
        if apt.fallback:
            out += dial_problems(f"{key}.fallback", apt.fallback, transport)
        if apt.strategy == "parallel" and len(apt.residents) > self.sip.max_calls:
            out.append(
                f"{key}.residents: {len(apt.residents)} rung at once (strategy 'parallel') but sip.max_calls is "
                f"{self.sip.max_calls}: the calls beyond it would fail; raise max_calls or ring 'sequential'"
            )
        t = self.timing
        ring = apt.ring_stages * t.ring_timeout_seconds
        if t.visit_deadline_seconds <= ring:
            out.append(
                f"timing.visit_deadline_seconds: {t.visit_deadline_seconds:g} s ends a visit to {key} "
                f"({apt.name!r}) before its {apt.ring_stages} ring stage(s) of ring_timeout_seconds "
                f"{t.ring_timeout_seconds:g} s ({ring:g} s) are over; make it longer than {ring:g} s"
            )
        return out


def config_warnings(config: Config, source: str) -> list[str]:
    """What is valid but probably not what the installer meant; logged at start and by check-config."""
    out: list[str] = []
    sip = config.sip
    numbered = any(apt.number for apt in config.apartments)
    if config.keypad is not None and not numbered:
        out.append(f"{source}: [keypad] is set but no apartment has a number: every number typed is 'not found'")
    if config.keypad is None and numbered:
        out.append(f"{source}: apartments have keypad numbers but there is no [keypad]: nobody can type them")
    if sip.inbound_allow and not sip.inbound_sources:
        out.append(
            f"{source}: sip.inbound_allow matches the caller's From header, which anyone can forge; "
            "set sip.inbound_sources to the PBX's or the callers' addresses"
        )
    if config.inbound_codes and not sip.inbound_allow:
        out.append(f"{source}: inbound_codes are set but sip.inbound_allow is empty: nobody is answered to type them")
    for i, network in enumerate(sip.inbound_sources):
        parsed = ipaddress.ip_network(network, strict=False)  # validated by SipConfig.problems
        if parsed.prefixlen < WIDE_PREFIX:
            out.append(
                f"{source}: sip.inbound_sources[{i}]: {network!r} is {parsed.num_addresses:,} addresses wide: "
                "it hardly limits where an allowlisted call may come from, and silences the forged-From "
                "warning; list the PBX's or the callers' own addresses"
            )
    return out
