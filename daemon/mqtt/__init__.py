"""MQTT and Home Assistant: the panel's events, state and (opt-in) commands on a broker.

``link = await tg.start(partial(run_mqtt, config.mqtt, app, panel_name=config.panel_name))`` in the
app's task group; ``link.health()`` for status and selftest. See docs/mqtt.md.
"""

from daemon.mqtt.link import MqttHealth, MqttLink, run_mqtt
from daemon.mqtt.settings import MqttCommandsConfig, MqttConfig, MqttTlsConfig

__all__ = ["MqttCommandsConfig", "MqttConfig", "MqttHealth", "MqttLink", "MqttTlsConfig", "run_mqtt"]
