"""The daemon's configuration: one TOML file into frozen dataclasses, validated completely up front.

Every problem is collected and reported at once (:class:`~daemon.errors.ConfigError`, exit status 78),
each naming the file, the key, what is wrong and what is accepted. Nothing starts half-configured.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Literal

from daemon.errors import ConfigError
from daemon.prompt_texts import DEFAULT_PROMPTS_EN, DEFAULT_PROMPTS_PT, PROMPT_NAMES
from daemon.settings_schema import build
from hw.settings import (
    AudioConfig,
    ButtonConfig,
    DoorContactConfig,
    GpioConfig,
    InputConfig,
    LedConfig,
    PanelConfig,
    RelayConfig,
    TamperConfig,
    positive,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "PROMPT_NAMES",
    "Apartment",
    "AudioConfig",
    "ButtonConfig",
    "Config",
    "DoorContactConfig",
    "GpioConfig",
    "InputConfig",
    "LedConfig",
    "PathsConfig",
    "PromptsConfig",
    "RelayConfig",
    "SipAccountConfig",
    "SipConfig",
    "TamperConfig",
    "TimingConfig",
    "default_config_text",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG_PATH = Path("/etc/intercom/intercom.toml")

_SIP_URI = re.compile(r"^sips?:(?:[^@\s<>\"]+@)?[A-Za-z0-9.\-\[\]:]+(?::\d{1,5})?(?:;[^\s<>\"]*)?$")
_GPIO_RANGE = range(0, 28)  # BCM numbers on the Pi's 40-pin header


def is_sip_uri(text: str) -> bool:
    return bool(_SIP_URI.match(text))


def _sip_uri_problems(key: str, value: str) -> list[str]:
    if is_sip_uri(value):
        return []
    return [f"{key}: {value!r} is not a SIP URI; accepted: sip:user@host[:port] or sips:..."]


def _is_code(code: str) -> bool:
    return code.isascii() and code.isdigit() and 1 <= len(code) <= 12


@dataclass(frozen=True)
class SipAccountConfig:
    # The panel's own address. With no registrar the panel places direct-IP calls only.
    uri: str = "sip:portao@127.0.0.1"
    registrar: str = ""
    username: str = ""
    password: str = ""
    password_file: str = ""  # a file holding only the password, preferred to password
    realm: str = "*"
    register_expiry: int = 300

    def problems(self) -> list[str]:
        out = _sip_uri_problems("uri", self.uri)
        if self.registrar:
            out += _sip_uri_problems("registrar", self.registrar)
        if self.password and self.password_file:
            out.append("password and password_file: give one, not both")
        if not 60 <= self.register_expiry <= 86400:
            out.append(f"register_expiry: {self.register_expiry} out of range 60..86400 seconds")
        return out


# Beyond this many call slots pjlib's 64-socket ioqueue leaves no room to refuse an INVITE flood safely
# (daemon/sip/_teardown_pace.py computes the budget; its tests check this limit still leaves one).
MAX_CALLS_LIMIT = 12


@dataclass(frozen=True)
class SipConfig:
    transport: Literal["udp", "tcp", "tls"] = "udp"
    bind_address: str = "0.0.0.0"
    port: int = 5060
    # Below Linux's ephemeral range (32768-60999): pjsua's default 4000x collides with outgoing sockets.
    rtp_port: int = 20000
    rtp_port_range: int = 100
    account: SipAccountConfig = field(default_factory=SipAccountConfig)
    inbound_allow: tuple[str, ...] = ()  # callers auto-answered; everyone else is refused
    # Addresses/networks an allowlisted call must come from. inbound_allow matches the From header, which
    # any caller can write; the source address of a UDP/TCP INVITE cannot be forged so easily. () = any.
    inbound_sources: tuple[str, ...] = ()
    inbound_refuse_status: int = 603
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_verify_server: bool = True
    srtp: Literal["disabled", "optional", "mandatory"] = "disabled"
    max_calls: int = 8
    # A confirmed call that receives no RTP for this long is hung up (far end gone silent, network dead).
    media_timeout_seconds: float = 20.0  # 0: never

    def problems(self) -> list[str]:
        out: list[str] = []
        if not 0 <= self.port <= 65535:
            out.append(f"port: {self.port} out of range 0..65535")
        if not 1024 <= self.rtp_port <= 32767 - self.rtp_port_range:
            out.append(f"rtp_port: {self.rtp_port} must be 1024..{32767 - self.rtp_port_range} (below ephemeral)")
        for i, uri in enumerate(self.inbound_allow):
            out += _sip_uri_problems(f"inbound_allow[{i}]", uri)
        for i, network in enumerate(self.inbound_sources):
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                out.append(f"inbound_sources[{i}]: {network!r} is not an IP address or network (10.0.0.5, 10.0.0.0/24)")
        if not (400 <= self.inbound_refuse_status <= 699):
            out.append(f"inbound_refuse_status: {self.inbound_refuse_status} must be a 4xx, 5xx or 6xx status")
        if self.transport == "tls" and not self.tls_ca_file and self.tls_verify_server:
            out.append("tls_ca_file: required with transport = 'tls' and tls_verify_server = true")
        if self.srtp == "mandatory" and self.transport != "tls":
            # pjsua only sends SRTP keys over a secure transport: every call would fail to be placed.
            out.append("srtp: 'mandatory' needs transport = 'tls' (SRTP keys travel in the signalling)")
        if not 1 <= self.max_calls <= MAX_CALLS_LIMIT:
            # Each call holds 2 of pjlib's 64 ioqueue sockets, and more are kept for paced refusals.
            out.append(f"max_calls: {self.max_calls} out of range 1..{MAX_CALLS_LIMIT}")
        out += positive("media_timeout_seconds", self.media_timeout_seconds, zero_ok=True)
        return out


@dataclass(frozen=True)
class TimingConfig:
    ring_timeout_seconds: float = 30.0
    max_call_seconds: float = 120.0
    call_warning_seconds: float = 10.0  # warning tone this long before max_call_seconds
    visit_deadline_seconds: float = 300.0
    hangup_after_open_seconds: float = 3.0
    wrong_code_limit: int = 3
    lockout_seconds: float = 300.0
    second_press: Literal["ignore", "restart_prompt"] = "ignore"
    other_apartment_press: Literal["queue", "refuse"] = "queue"

    def problems(self) -> list[str]:
        out: list[str] = []
        for name in ("ring_timeout_seconds", "max_call_seconds", "visit_deadline_seconds", "lockout_seconds"):
            out += positive(name, getattr(self, name))
        out += positive("hangup_after_open_seconds", self.hangup_after_open_seconds, zero_ok=True)
        out += positive("call_warning_seconds", self.call_warning_seconds, zero_ok=True)
        if self.call_warning_seconds >= self.max_call_seconds:
            out.append("call_warning_seconds: must be less than max_call_seconds")
        if self.wrong_code_limit < 1:
            out.append(f"wrong_code_limit: must be 1 or more, got {self.wrong_code_limit}")
        return out


@dataclass(frozen=True)
class PromptsConfig:
    language: Literal["pt-BR", "en"] = "pt-BR"
    engine: Literal["espeak-ng", "piper"] = "espeak-ng"
    voice: str = ""  # empty: the language's default voice (espeak-ng "pt-br" / "en-us")
    piper_model: str = ""  # path to a piper .onnx voice model, with engine = "piper"
    text: dict[str, str] = field(default_factory=dict)  # overrides per prompt name
    files: dict[str, str] = field(default_factory=dict)  # recorded WAV instead of synthesis

    def problems(self) -> list[str]:
        out = []
        for table, entries in (("text", self.text), ("files", self.files)):
            for name in entries:
                if name not in PROMPT_NAMES:
                    out.append(f"{table}.{name}: unknown prompt; accepted: {', '.join(PROMPT_NAMES)}")
        for name, path in self.files.items():
            if not Path(path).is_file():
                out.append(f"files.{name}: WAV file {path!r} does not exist")
        if self.engine == "piper" and not self.piper_model:
            out.append("piper_model: required with engine = 'piper' (path to a .onnx voice)")
        return out

    def texts(self) -> dict[str, str]:
        base = DEFAULT_PROMPTS_PT if self.language == "pt-BR" else DEFAULT_PROMPTS_EN
        return {**base, **self.text}

    def voice_name(self) -> str:
        return self.voice or ("pt-br" if self.language == "pt-BR" else "en-us")


@dataclass(frozen=True)
class Apartment:
    name: str
    buttons: tuple[str, ...]
    residents: tuple[str, ...]
    codes: tuple[str, ...] = ()
    strategy: Literal["parallel", "sequential"] = "parallel"
    fallback: str = ""  # e.g. the concierge, called when no resident answers
    mode: Literal["talk", "announce"] = "talk"

    def problems(self) -> list[str]:
        out: list[str] = []
        if not self.residents:
            out.append("residents: at least one SIP address is required")
        for i, uri in enumerate(self.residents):
            out += _sip_uri_problems(f"residents[{i}]", uri)
        if self.fallback:
            out += _sip_uri_problems("fallback", self.fallback)
        for i, code in enumerate(self.codes):
            if not _is_code(code):
                out.append(f"codes[{i}]: {code!r} must be 1 to 12 digits 0-9")
        return out


@dataclass(frozen=True)
class PathsConfig:
    state_dir: str = "/var/lib/intercom"  # history database, event log
    cache_dir: str = "/var/cache/intercom"  # synthesized prompts
    runtime_dir: str = "/run/intercom"  # control socket


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
    paths: PathsConfig = field(default_factory=PathsConfig)

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
        )

    def problems(self) -> list[str]:
        out: list[str] = [
            f"inbound_codes[{i}]: {c!r} must be 1 to 12 digits 0-9"
            for i, c in enumerate(self.inbound_codes)
            if not _is_code(c)
        ]
        pins: dict[int, str] = {}

        def claim(pin: int, key: str) -> None:
            if pin not in _GPIO_RANGE:
                out.append(f"{key}: GPIO {pin} is not a BCM pin on the header; accepted: 0..27")
            elif pin in pins:
                out.append(f"{key}: GPIO {pin} is already used by {pins[pin]}")
            else:
                pins[pin] = key

        for i, b in enumerate(self.buttons):
            claim(b.pin, f"buttons[{i}].pin")
        claim(self.relay.pin, "relay.pin")
        for key, dev in (
            ("exit_button", self.exit_button),
            ("door_contact", self.door_contact),
            ("tamper", self.tamper),
        ):
            if dev is not None:
                claim(dev.pin, f"{key}.pin")
        for name, led in self.leds.items():
            if name not in ("status", "fault"):
                out.append(f"leds.{name}: unknown LED; accepted: status, fault")
            claim(led.pin, f"leds.{name}.pin")
        names = [b.name for b in self.buttons]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            out.append(f"buttons: the name {dup!r} is used twice")
        owner: dict[str, str] = {}
        apt_names = [a.name for a in self.apartments]
        for dup in sorted({n for n in apt_names if apt_names.count(n) > 1}):
            out.append(f"apartments: the name {dup!r} is used twice")
        for i, apt in enumerate(self.apartments):
            for button in apt.buttons:
                if button not in names:
                    out.append(f"apartments[{i}].buttons: no button named {button!r}; defined: {names}")
                elif button in owner:
                    out.append(f"apartments[{i}].buttons: {button!r} already rings apartment {owner[button]!r}")
                else:
                    owner[button] = apt.name
        if not self.apartments:
            out.append("apartments: at least one apartment is required")
        return out

    def apartment_for_button(self, button: str) -> Apartment | None:
        return next((a for a in self.apartments if button in a.buttons), None)


def parse_config(text: str, source: str = "<config>") -> Config:
    """Parse and validate TOML text. Raises :class:`ConfigError` listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"TOML syntax error: {exc}", source) from exc
    problems: list[str] = []
    config = build(Config, data, problems)
    if problems or config is None:
        raise ConfigError(problems, source)
    return config


def load_config(path: Path | str, *, environ: dict[str, str] | None = None) -> tuple[Config, list[str]]:
    """Load ``path``; return the config and warnings (e.g. a password file readable by others).

    The SIP password may come from ``INTERCOM_SIP_PASSWORD`` in the environment (systemd's
    ``LoadCredential``/``EnvironmentFile``) or ``sip.account.password_file``.
    """
    path = Path(path)
    env = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", str(path)) from exc
    config = parse_config(text, str(path))
    warnings: list[str] = []
    account = config.sip.account
    if account.password:
        warnings += _world_readable(path, "sip.account.password")
    if account.password_file:
        secret = Path(account.password_file)
        try:
            password = secret.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"sip.account.password_file: cannot read {secret}: {exc.strerror}", str(path)) from exc
        warnings += _world_readable(secret, "sip.account.password_file")
        account = replace(account, password=password)
    if config.sip.inbound_allow and not config.sip.inbound_sources:
        warnings.append(
            f"{path}: sip.inbound_allow matches the caller's From header, which anyone can forge; "
            "set sip.inbound_sources to the PBX's or the callers' addresses"
        )
    if env.get("INTERCOM_SIP_PASSWORD"):
        account = replace(account, password=env["INTERCOM_SIP_PASSWORD"])
    return replace(config, sip=replace(config.sip, account=account)), warnings


def _world_readable(path: Path, key: str) -> list[str]:
    try:
        mode = path.stat().st_mode
    except OSError:
        return []
    if mode & (stat.S_IROTH | stat.S_IRGRP):
        return [f"{path}: holds a password ({key}) but is readable by group/others; chmod 600 it"]
    return []


def default_config_text() -> str:
    """The embedded example config (a simulated panel calling a phone on 127.0.0.1)."""
    return resources.files("daemon").joinpath("default-config.toml").read_text(encoding="utf-8")
