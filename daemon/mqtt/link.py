"""The MQTT link: one task in the app's task group, on aiomqtt (paho's protocol driven by the event loop).

Three parts, so that no broker trouble reaches a visit:

* the *consumer* reads ``app.events()`` and only translates and appends to the :class:`Outbox` (bounded,
  drop-oldest): it never awaits the broker, so the app's event subscriber never falls behind because of it;
* the *connection loop* connects, announces ``online`` (the last will says ``offline``), sends discovery
  and state, then publishes queued events in order, each taken off the queue once acknowledged; any broker
  error ends the session and the next attempt comes after an exponential back-off with jitter;
* the *command runner* runs commands one at a time from a small queue, outside any one connection, so a
  dropped connection never cancels an ``open`` or a ``reload`` halfway.

Nothing here raises into the app's task group: a broker that is down, refuses the login or misbehaves
leaves the panel working as it does without MQTT, and :meth:`MqttLink.health` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import random
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import anyio
from aiomqtt.exceptions import MqttConnectError
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from daemon import __version__
from daemon.errors import ConfigError
from daemon.facade import AppFacade
from daemon.mqtt.commands import run_command
from daemon.mqtt.discovery import DiscoveryInput, discovery_messages
from daemon.mqtt.outbox import Outbox
from daemon.mqtt.payloads import EventTranslator
from daemon.mqtt.settings import MqttConfig, MqttTlsConfig
from daemon.mqtt.state import StateTracker
from daemon.mqtt.topics import Outgoing, Topics

__all__ = ["MqttHealth", "MqttLink", "run_mqtt"]

log = logging.getLogger(__name__)

_AUTH_CODES = frozenset({4, 5, 134, 135})  # MQTT 3.1.1 and 5 "bad user name or password" / "not authorized"
_COMMAND_QUEUE = 16
_WINDOW = 64  # events in flight at once
_CLOSE_TIMEOUT = 2.0


@dataclass(frozen=True)
class MqttHealth:
    connected: bool
    detail: str
    queued: int  # events waiting for the broker
    dropped: int  # events dropped because the queue was full


class MqttLink:
    """The panel on one broker. ``await tg.start(link.run)``; :meth:`health` for status and selftest."""

    def __init__(self, config: MqttConfig, app: AppFacade, *, panel_name: str) -> None:
        self.config = config
        self._app = app
        self._panel_name = panel_name
        names = config.resolve(panel_name)
        self.panel_id, self.client_id = names.panel_id, names.client_id
        self.topics = Topics(names.topic_prefix, config.discovery_prefix)
        self._outbox = Outbox(config.queue_size)
        self._translator = EventTranslator(self.topics)
        self._state = StateTracker(self.topics)
        self._client: aiomqtt.Client | None = None  # while connected: where replies go
        self._discovery_due = False
        self._detail = "starting"
        self._last_failure = ""
        self._was_connected = False
        self.published = 0  # messages the broker acknowledged
        self.stream_restarts = 0  # the app's event stream ended (we fell behind) and was subscribed again

    def health(self) -> MqttHealth:
        return MqttHealth(self._client is not None, self._detail, len(self._outbox), self._outbox.dropped)

    @property
    def broker(self) -> str:
        return f"{self.config.host}:{self.config.broker_port}"

    async def run(self, *, task_status: TaskStatus[MqttLink] = TASK_STATUS_IGNORED) -> None:
        try:
            password, tls = await anyio.to_thread.run_sync(_load_secrets, self.config)
        except ConfigError as exc:
            self._detail = f"not started: {exc.problems[0]}"
            log.error("mqtt: %s; the panel runs without MQTT", exc.problems[0])
            task_status.started(self)
            return
        status = self._safe_status()
        if status is not None:
            self._state.update(status)
        commands_send, commands_receive = anyio.create_memory_object_stream[tuple[bytes, bool]](_COMMAND_QUEUE)
        started = False
        stale_writer = _StaleSocketWriter.install()
        try:
            async with anyio.create_task_group() as tg, commands_send, commands_receive:
                await tg.start(self._consume_events)
                tg.start_soon(self._run_commands, commands_receive)
                task_status.started(self)
                started = True
                await self._connect_forever(password, tls, commands_send)
        except Exception as exc:  # a bug here must not take the app's task group (the panel) down with it
            log.exception("mqtt: the link failed; the panel goes on without MQTT")
            self._client, self._detail = None, f"failed: {type(exc).__name__}: {exc}"
            if not started:
                task_status.started(self)
        finally:
            stale_writer.remove()

    # -- the consumer: app events into the outbox, never waiting --

    async def _consume_events(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        started = False
        while True:
            async with self._app.events() as events:
                if not started:
                    started = True
                    task_status.started()
                async for event in events:
                    self.on_event(event)
            # The app ends a subscriber that fell too far behind; events in between are lost, so say so.
            self.stream_restarts += 1
            log.warning("mqtt: the app's event stream ended; subscribing again (events in between are lost)")
            await anyio.sleep(0.1)

    def on_event(self, event: dict[str, object]) -> None:
        """One app event: queue its message and note what state changed. Synchronous: it cannot wait."""
        try:
            facts = self._translator.translate(event)
        except Exception:  # an event of a shape we did not foresee is skipped, not fatal
            log.exception("mqtt: event %r not understood; skipped", event.get("event"))
            return
        if facts.message is not None:
            self._outbox.put(facts.message)
        status = self._safe_status()
        if status is not None and self._state.update(status, facts):
            self._outbox.wake()

    def _safe_status(self) -> dict[str, object] | None:
        try:
            return self._app.status()
        except Exception:  # status is read on every event; a bug there must not stop the event flow
            log.exception("mqtt: app.status() raised; state not updated")
            return None

    # -- the connection loop --

    async def _connect_forever(
        self, password: str | None, tls: ssl.SSLContext | None, commands: MemoryObjectSendStream[tuple[bytes, bool]]
    ) -> None:
        cfg = self.config
        failures = 0
        while True:
            client = aiomqtt.Client(
                cfg.host,
                cfg.broker_port,
                username=cfg.username or None,
                password=password,
                identifier=self.client_id,
                will=aiomqtt.Will(self.topics.availability, "offline", qos=cfg.qos, retain=True),
                keepalive=cfg.keepalive_seconds,
                timeout=cfg.timeout_seconds,
                tls_context=tls,
                clean_session=True,  # no commands queued for us while we were away: stale ones must not run
                max_queued_incoming_messages=_COMMAND_QUEUE * 4,
            )
            client.pending_calls_threshold = _WINDOW + 8  # a full window in flight is normal here, not a warning
            self._detail = f"connecting to {self.broker}"
            self._was_connected = False
            try:
                await self._session(client, commands)
            except Exception as exc:  # whatever the broker does, the panel goes on
                self._failed(exc)
            failures = 1 if self._was_connected else failures + 1  # a session that worked resets the back-off
            delay = _backoff(failures, cfg.reconnect_min_seconds, cfg.reconnect_max_seconds)
            self._detail += f"; next attempt in {delay:.1f} s"
            await anyio.sleep(delay)

    def _failed(self, error: Exception) -> None:
        exc = _mqtt_error(error)
        if exc is None:
            log.error("mqtt: the link failed unexpectedly; reconnecting", exc_info=error)
            self._detail = f"internal error: {type(error).__name__}: {error}"
            return
        rc = getattr(exc, "rc", None)
        code = getattr(rc, "value", rc)
        if isinstance(exc, MqttConnectError) and code in _AUTH_CODES:
            detail = f"broker {self.broker} refused the login of user {self.config.username!r}: {exc}"
            hint = "; check [mqtt] username and password_file"
            level = logging.ERROR
        else:
            detail = f"broker {self.broker} unreachable or gone: {exc}"
            hint = "; retrying with back-off, events are kept in the queue"
            level = logging.WARNING
        self._detail = detail
        if detail != self._last_failure:  # once per kind of failure, not once per retry
            log.log(level, "mqtt: %s%s", detail, hint)
        self._last_failure = detail

    async def _session(self, client: aiomqtt.Client, commands: MemoryObjectSendStream[tuple[bytes, bool]]) -> None:
        await client.__aenter__()
        try:
            self._client = client
            self._was_connected = True
            self._detail = f"connected to {self.broker}"
            self._last_failure = ""
            log.info("mqtt: connected to %s as %s, topics under %s/", self.broker, self.client_id, self.topics.prefix)
            await self._send(client, Outgoing(self.topics.availability, "online", retain=True))
            await client.subscribe(self.topics.command, qos=self.config.qos)
            if self.config.discovery:
                await client.subscribe(self.topics.ha_status, qos=self.config.qos)
            self._discovery_due = self.config.discovery
            self._state.forget_published()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._receive, client, commands)
                await self._publish_forever(client)
        finally:
            self._client = None
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_TIMEOUT):
                # a clean stop says offline itself (a clean DISCONNECT suppresses the will); when the
                # connection is already gone this fails at once and the broker publishes the will
                with contextlib.suppress(aiomqtt.MqttError):
                    await client.publish(
                        self.topics.availability, "offline", qos=self.config.qos, retain=True, timeout=1
                    )
                with contextlib.suppress(aiomqtt.MqttError):
                    await client.__aexit__(None, None, None)

    async def _publish_forever(self, client: aiomqtt.Client) -> None:
        while True:
            if self._discovery_due:
                self._discovery_due = False
                for message in discovery_messages(self.topics, self._discovery_input()):
                    await self._send(client, message)
            for name, message in self._state.pending():
                await self._send(client, message)
                self._state.published(name, message.payload)
            batch = self._outbox.head(_WINDOW)
            if batch:
                # Published together, acknowledged together: paho writes them in order on one TCP stream, so
                # the broker gets them in order; one per round trip would fall behind a busy panel.
                async with anyio.create_task_group() as tg:
                    for _, message in batch:
                        tg.start_soon(self._send, client, message)
                self._outbox.done(batch[-1][0])  # only now: a batch that failed is sent again after reconnecting
                continue
            if not self._discovery_due and not self._state.pending():
                await self._outbox.wait()

    async def _send(self, client: aiomqtt.Client, message: Outgoing) -> None:
        await client.publish(
            message.topic,
            message.payload,
            qos=self.config.qos,
            retain=message.retain,
            timeout=self.config.timeout_seconds,
        )
        self.published += 1

    def _discovery_input(self) -> DiscoveryInput:
        return DiscoveryInput(
            panel_id=self.panel_id,
            panel_name=self._panel_name,
            version=__version__,
            buttons=tuple(self._app.button_names()),
            commands=self.config.commands,
            door_contact=self._state.door_contact,
            qos=self.config.qos,
            tamper_switch=self._state.tamper_switch,
        )

    async def _receive(self, client: aiomqtt.Client, commands: MemoryObjectSendStream[tuple[bytes, bool]]) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload or "").encode()
            if message.topic.matches(self.topics.ha_status):
                if payload == b"online":  # Home Assistant (re)started: it wants the discovery messages again
                    self._discovery_due = True
                    self._outbox.wake()
            elif message.topic.matches(self.topics.command):
                try:
                    commands.send_nowait((payload, message.retain))
                except anyio.WouldBlock:
                    log.warning("mqtt: command refused: %d commands already waiting", _COMMAND_QUEUE)
                    await self._reply({"ok": False, "error": "busy: too many commands waiting"})

    # -- commands --

    async def _run_commands(self, commands: MemoryObjectReceiveStream[tuple[bytes, bool]]) -> None:
        async for payload, retained in commands:
            reply = await run_command(self._app, self.config.commands.enabled(), payload, retained=retained)
            await self._reply(reply)

    async def _reply(self, body: dict[str, object]) -> None:
        client = self._client
        if client is None:
            log.info("mqtt: reply to command %r not sent: the broker is away", body.get("cmd", ""))
            return
        try:
            await self._send(client, Outgoing.json(self.topics.reply, body))
        except aiomqtt.MqttError as exc:
            log.info("mqtt: reply to command %r not sent: %s", body.get("cmd", ""), exc)


async def run_mqtt(
    config: MqttConfig,
    app: AppFacade,
    *,
    panel_name: str,
    task_status: TaskStatus[MqttLink] = TASK_STATUS_IGNORED,
) -> None:
    """The MQTT link as one task: ``link = await tg.start(partial(run_mqtt, cfg, app, panel_name=...))``."""
    await MqttLink(config, app, panel_name=panel_name).run(task_status=task_status)


def _mqtt_error(error: BaseException) -> aiomqtt.MqttError | None:
    """The broker error behind ``error``, also when a task group wrapped it in an exception group."""
    if isinstance(error, aiomqtt.MqttError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _mqtt_error(inner)
            if found is not None:
                return found
    return None


def _backoff(failures: int, low: float, high: float) -> float:
    """Exponential back-off with jitter: a fleet of panels that lost one broker does not return in step."""
    ceiling = min(high, low * 2.0 ** min(failures - 1, 20))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter, not cryptography


class _StaleSocketWriter:
    """Swallows one known aiomqtt race, and nothing else.

    aiomqtt registers paho's socket for writing with ``call_soon_threadsafe(loop.add_writer, fd, ...)``; when the
    broker drops the connection in between, the socket is closed before that call runs and ``add_writer`` raises
    EBADF inside the loop, as an "exception in callback" (seen once under load with the broker stopped mid-visit).
    The connection is already gone and the link reconnects by itself, so that one error is logged at DEBUG; every
    other loop error goes to the handler that was there before. aiomqtt is asyncio-only, so is this.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._previous = loop.get_exception_handler()

    @classmethod
    def install(cls) -> _StaleSocketWriter:
        hook = cls(asyncio.get_running_loop())
        hook._loop.set_exception_handler(hook._handle)
        return hook

    def _handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno == errno.EBADF and "add_writer" in repr(context.get("handle")):
            log.debug("mqtt: a closed socket's write registration came late (the link reconnects): %s", exc)
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)

    def remove(self) -> None:
        if self._loop.get_exception_handler() == self._handle:
            self._loop.set_exception_handler(self._previous)


def _load_secrets(config: MqttConfig) -> tuple[str | None, ssl.SSLContext | None]:
    """Read the password file and build the TLS context (worker thread: both read files)."""
    password = None
    if config.password_file:
        path = Path(config.password_file)
        try:
            password = path.read_text(encoding="utf-8").strip()
            mode = path.stat().st_mode
        except OSError as exc:
            raise ConfigError(f"mqtt.password_file: cannot read {path}: {exc.strerror}") from exc
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("mqtt: %s holds a password but is readable by group/others; chmod 600 it", path)
    tls = _tls_context(config.tls) if config.tls.enabled else None
    return password, tls


def _tls_context(tls: MqttTlsConfig) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=tls.ca_file or None)
        if tls.cert_file:
            context.load_cert_chain(tls.cert_file, tls.key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"mqtt.tls: cannot load the certificates: {exc}") from exc
    if not tls.verify:
        log.warning("mqtt: tls.verify is false: the broker's certificate is not checked (anyone can pose as it)")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
