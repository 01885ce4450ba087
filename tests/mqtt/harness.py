"""Running the MQTT link in a test: its config against a test broker, and a task group around it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial

import anyio

from daemon.mqtt import MqttConfig, MqttLink, run_mqtt
from tests.mqtt.fakes import FakeApp

__all__ = ["link_config", "running_link", "until"]


def link_config(port: int, **changes: object) -> MqttConfig:
    """Fast reconnects and short timeouts, so outage tests take seconds."""
    base = MqttConfig(
        host="127.0.0.1",
        port=port,
        panel_id="test",
        keepalive_seconds=5,
        timeout_seconds=3.0,
        reconnect_min_seconds=0.05,
        reconnect_max_seconds=0.4,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@asynccontextmanager
async def running_link(config: MqttConfig, app: FakeApp) -> AsyncIterator[MqttLink]:
    async with anyio.create_task_group() as tg:
        link: MqttLink = await tg.start(partial(run_mqtt, config, app, panel_name="Portão"))
        try:
            yield link
        finally:
            tg.cancel_scope.cancel()


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a condition the link reaches on its own tasks (a queue length, a health detail)."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.005)
