"""MQTT and Home Assistant: the panel's events, state and (opt-in) commands on a broker.

``link = await tg.start(partial(run_mqtt, config.mqtt, app, panel_name=config.panel_name))`` in the
app's task group; ``link.health()`` for status and selftest. See docs/mqtt.md.

The settings import nothing but the standard library, so :mod:`daemon.config` can hold an
:class:`MqttConfig` without loading aiomqtt; the link is imported on first use of its names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from daemon.mqtt.settings import MqttCommandsConfig, MqttConfig, MqttTlsConfig

if TYPE_CHECKING:
    from daemon.mqtt.link import MqttHealth, MqttLink, run_mqtt

__all__ = ["MqttCommandsConfig", "MqttConfig", "MqttHealth", "MqttLink", "MqttTlsConfig", "run_mqtt"]

_LINK_NAMES = frozenset({"MqttHealth", "MqttLink", "run_mqtt"})


def __getattr__(name: str) -> Any:
    if name in _LINK_NAMES:
        from daemon.mqtt import link

        return getattr(link, name)
    raise AttributeError(f"module 'daemon.mqtt' has no attribute {name!r}")
