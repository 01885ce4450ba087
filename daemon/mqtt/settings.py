"""``[mqtt]`` settings: frozen dataclasses validated up front, like :mod:`daemon.config`'s.

They are built by :func:`daemon.settings_schema.build` (field types drive the checks; ``problems()`` checks
across fields). Names that depend on the panel (panel id, client id, topic prefix) default to values derived
from ``panel_name`` at run time by :meth:`MqttConfig.resolve`, so many panels can share one broker.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Annotated, Literal

from hw.settings import Range, range_problems

__all__ = [
    "MqttCommandsConfig",
    "MqttConfig",
    "MqttTlsConfig",
    "ResolvedNames",
    "slug",
]

_SLUG_OK = re.compile(r"[^a-z0-9_-]+")
_TOPIC_FORBIDDEN = re.compile(r"[+#\x00]")


def slug(text: str) -> str:
    """``"Portão Sul"`` -> ``"portao_sul"``: safe in a topic level and in Home Assistant ids ([a-z0-9_-])."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _SLUG_OK.sub("_", ascii_text.lower()).strip("_") or "panel"


@dataclass(frozen=True)
class MqttTlsConfig:
    enabled: bool = False
    ca_file: str = ""  # the CA that signed the broker's certificate; "" = the system's CAs
    verify: bool = True  # check the broker's certificate and host name; false only for a lab broker
    cert_file: str = ""  # a client certificate, when the broker asks for one
    key_file: str = ""

    def problems(self) -> list[str]:
        out: list[str] = []
        if not self.enabled and (self.ca_file or self.cert_file or self.key_file):
            out.append("ca_file/cert_file/key_file are given but enabled is false; set enabled = true")
        if bool(self.cert_file) != bool(self.key_file):
            out.append("cert_file and key_file: give both or neither")
        return out


@dataclass(frozen=True)
class MqttCommandsConfig:
    """Which commands the command topic accepts. Each is off until enabled: MQTT can open the door."""

    open: bool = False
    press: bool = False
    dial: bool = False
    hangup: bool = False
    reload: bool = False

    def enabled(self) -> frozenset[str]:
        return frozenset(name for name in ("open", "press", "dial", "hangup", "reload") if getattr(self, name))


@dataclass(frozen=True)
class ResolvedNames:
    """The names :class:`MqttConfig` leaves to default, worked out for one panel."""

    panel_id: str
    client_id: str
    topic_prefix: str


@dataclass(frozen=True)
class MqttConfig:
    host: str = "localhost"
    port: Annotated[int, Range(0, 65535, note="0: 1883, or 8883 with TLS")] = 0
    tls: MqttTlsConfig = field(default_factory=MqttTlsConfig)
    username: str = ""
    password_file: str = ""  # a file holding only the password (mode 0600)
    panel_id: str = ""  # "" = panel_name as a slug; set it when two panels share a name and a broker
    client_id: str = ""  # "" = intercom-<panel_id>
    topic_prefix: str = ""  # "" = intercom/<panel_id>
    qos: Literal[0, 1, 2] = 1
    keepalive_seconds: Annotated[int, Range(5, 3600, "s")] = 30
    # Events kept while the broker is away; beyond it the oldest are dropped.
    queue_size: Annotated[int, Range(1, 100_000)] = 1000
    discovery: bool = True  # Home Assistant MQTT discovery
    discovery_prefix: str = "homeassistant"
    reconnect_min_seconds: Annotated[float, Range(0.05, 3600, "s")] = 1.0
    reconnect_max_seconds: Annotated[float, Range(0.05, 3600, "s")] = 60.0
    timeout_seconds: Annotated[float, Range(0.1, 120, "s")] = 10.0  # connect, and each publish's acknowledgement
    commands: MqttCommandsConfig = field(default_factory=MqttCommandsConfig)

    @property
    def broker_port(self) -> int:
        return self.port or (8883 if self.tls.enabled else 1883)

    def resolve(self, panel_name: str) -> ResolvedNames:
        panel_id = self.panel_id or slug(panel_name)
        return ResolvedNames(
            panel_id=panel_id,
            client_id=self.client_id or f"intercom-{panel_id}",
            topic_prefix=(self.topic_prefix or f"intercom/{panel_id}").rstrip("/"),
        )

    def problems(self) -> list[str]:
        out: list[str] = []
        if not self.host.strip():
            out.append("host: must not be empty")
        out += range_problems(self)
        if self.password_file and not self.username:
            out.append("password_file is given without username; the broker would never see the password")
        if self.panel_id and slug(self.panel_id) != self.panel_id:
            out.append(f"panel_id: {self.panel_id!r} must be [a-z0-9_-] only, e.g. {slug(self.panel_id)!r}")
        for key, topic in (("topic_prefix", self.topic_prefix), ("discovery_prefix", self.discovery_prefix)):
            if _TOPIC_FORBIDDEN.search(topic) or topic.startswith("/") or "//" in topic:
                out.append(f"{key}: {topic!r} is not a topic prefix; no '+', '#', empty levels or leading '/'")
        if not self.discovery_prefix:
            out.append("discovery_prefix: must not be empty (Home Assistant's default is 'homeassistant')")
        if self.reconnect_min_seconds > self.reconnect_max_seconds:
            out.append("reconnect_min_seconds: must not be more than reconnect_max_seconds")
        return out
