"""The daemon's configuration: one TOML file into frozen dataclasses, validated completely up front.

Every problem is collected and reported at once (:class:`~daemon.errors.ConfigError`, exit status 78),
each naming the file, the key, what is wrong and what is accepted. Nothing starts half-configured.

- ``_load``: bytes -> UTF-8 -> TOML -> dataclasses (:func:`parse_config`, :func:`load_config`), secrets.
- ``_model``: :class:`Config` and the checks spanning sections; ``_sip`` and ``_visit``: the sections.
- ``_host``: what depends on this host (:func:`host_problems`): directories, addresses, TLS files.
- hw/'s device settings (``hw.settings``) are composed in; every number there and here has a declared range.
"""

from __future__ import annotations

from pathlib import Path

from daemon.config._access import AccessConfig, PinConfig, WindowConfig
from daemon.config._directory import directory_csv
from daemon.config._host import host_problems
from daemon.config._load import check_config, default_config_text, load_config, parse_config
from daemon.config._model import Config, config_warnings
from daemon.config._sip import MAX_CALLS_LIMIT, SipAccountConfig, SipConfig
from daemon.config._uris import dial_problems, uri_problems
from daemon.config._visit import (
    CODE_LENGTH,
    INBOUND_APARTMENT,
    Apartment,
    KeypadSettings,
    PathsConfig,
    PromptsConfig,
    TimingConfig,
    door_open_prompt,
)
from daemon.prompt_texts import PROMPT_NAMES
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
)

__all__ = [
    "CODE_LENGTH",
    "DEFAULT_CONFIG_PATH",
    "INBOUND_APARTMENT",
    "MAX_CALLS_LIMIT",
    "PROMPT_NAMES",
    "AccessConfig",
    "Apartment",
    "AudioConfig",
    "ButtonConfig",
    "Config",
    "DoorContactConfig",
    "GpioConfig",
    "InputConfig",
    "KeypadSettings",
    "LedConfig",
    "PanelConfig",
    "PathsConfig",
    "PinConfig",
    "PromptsConfig",
    "RelayConfig",
    "SipAccountConfig",
    "SipConfig",
    "TamperConfig",
    "TimingConfig",
    "WindowConfig",
    "check_config",
    "config_warnings",
    "default_config_text",
    "dial_problems",
    "directory_csv",
    "door_open_prompt",
    "host_problems",
    "is_sip_uri",
    "load_config",
    "parse_config",
    "uri_problems",
]

DEFAULT_CONFIG_PATH = Path("/etc/intercom/intercom.toml")


def is_sip_uri(text: str) -> bool:
    """Is ``text`` a SIP URI the panel accepts (the one parser, :class:`daemon.sip._uri.SipUri`)?"""
    return not uri_problems("uri", text)
