"""The daemon: one anyio loop, one task group, everything else owned by it.

Start-up order is the order of trust: config (already valid), the panel with the relay released, prompts
synthesized into the cache (a press never waits for synthesis), the SIP engine up, then READY to systemd.
Shutdown runs the other way, shielded: calls hung up, relay released, history flushed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from daemon import __version__
from daemon.app_parts import PanelPorts, SipCalls, hw_event_text, make_record
from daemon.bridge import EventChannel, LoopBridge
from daemon.config import Config, load_config
from daemon.errors import ConfigError, IntercomError, hw_errors
from daemon.flow.events import Dtmf, LegAnswered, LegEnded, LegRinging
from daemon.flow.runner import VisitResult, VisitRunner
from daemon.history import History
from daemon.prompts import PromptCache, PromptSet
from daemon.service import handle_signals, sd_notify, watchdog_task
from daemon.sip import (
    CallAnswered,
    CallEnded,
    CallHandle,
    CallRinging,
    DtmfReceived,
    IncomingCall,
    RegistrationChanged,
    SipEngine,
)
from daemon.visitlog import VisitLog
from daemon.visits import VisitRequest, Visits
from hw import events as hw_events
from hw.leds import LedState
from hw.panel import Panel
from hw.pins import make_pin_factory
from hw.talk import TalkPump

__all__ = ["IntercomApp", "run_app"]

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 3.0


class IntercomApp:
    """Wires the panel, the SIP engine, prompts, history and control around the visit queue."""

    def __init__(self, config: Config, config_path: Path | None = None, *, pin_factory: Any = None) -> None:
        self.config = config
        self.config_path = config_path
        self.started = time.monotonic()
        self._pin_factory = pin_factory
        self.ready = anyio.Event()
        self.registered = not config.sip.account.registrar  # direct-IP panels have nothing to register
        self.panel: Panel
        self.sip: SipEngine
        self.prompts: PromptSet
        self.history: History
        self.visit_log: VisitLog
        self.visits: Visits
        self._main_scope = anyio.CancelScope()  # replaced by the main task group's scope once running

    async def run(self) -> None:
        cfg = self.config
        state_dir = Path(cfg.paths.state_dir)
        await anyio.Path(state_dir).mkdir(parents=True, exist_ok=True)
        bridge = LoopBridge()
        hw_channel: EventChannel[hw_events.HwEvent] = EventChannel(bridge)
        async with AsyncExitStack() as stack:
            stack.callback(bridge.close)
            stack.callback(hw_channel.close)
            # The panel releases the relay at construction: fail-secure after a crash or power cut.
            with hw_errors():
                factory = self._pin_factory or make_pin_factory(cfg.gpio)
                self.panel = stack.enter_context(Panel(cfg.panel, pin_factory=factory, post=hw_channel.post))
            self.visit_log = VisitLog.in_state_dir(state_dir)
            self.visit_log.set_codes(_all_codes(cfg))  # codes are masked wherever they would be logged
            self.history = History.in_state_dir(state_dir)
            await stack.enter_async_context(self.history)
            cache = PromptCache(Path(cfg.paths.cache_dir))
            self.prompts = await cache.prepare(cfg.prompts)
            self.sip = await stack.enter_async_context(SipEngine(cfg.sip, bridge))
            talk = None
            if not self.sip.has_sound_device:
                log.info("pjsua2 has no sound device (the x86_64 wheel): talk mode carries audio through pyaudio")
                talk = TalkPump(cfg.audio, speaker=self.panel.speaker)
            ports = PanelPorts(self.panel, self.prompts)
            calls = SipCalls(self.sip, talk)
            self.visits = Visits(
                cfg,
                lambda visit, state: VisitRunner(
                    visit,
                    state,
                    calls=calls,
                    speaker=ports,
                    door=ports,
                    leds=ports,
                    prompts=ports,
                    visit_log=self.visit_log,
                ),
                new_id=self.visit_log.new_visit_id,
                sip_ready=lambda: self.registered,
                on_done=self._visit_done,
                refuse=self._refuse,
            )
            # The event-log writer lives outside the main task group: SIGTERM cancels that group, and the
            # visit's shielded teardown still logs its HANGUP and OUTCOME, which must reach events.jsonl.
            async with anyio.create_task_group() as writer:
                await writer.start(self.visit_log.run)
                try:
                    async with anyio.create_task_group() as tg:
                        self._main_scope = tg.cancel_scope
                        tg.start_soon(self.history.run)
                        tg.start_soon(self.panel.run)
                        tg.start_soon(self._hw_loop, hw_channel)
                        tg.start_soon(self._sip_loop)
                        tg.start_soon(self.visits.run)
                        tg.start_soon(watchdog_task)
                        await tg.start(
                            partial(
                                handle_signals, terminate=partial(self._terminate, tg.cancel_scope), reload=self.reload
                            )
                        )
                        await self._start_control(tg)
                        sd_notify(f"READY=1\nSTATUS=ready: {len(cfg.apartments)} apartments, version {__version__}")
                        log.info(
                            "intercom ready (%s, %.2f s after start)", cfg.panel_name, time.monotonic() - self.started
                        )
                        self.ready.set()
                    sd_notify("STOPPING=1")
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.visit_log.aclose()  # drains the queue, then run() returns

    async def _start_control(self, tg: anyio.abc.TaskGroup) -> None:
        from daemon.control import serve_control
        from daemon.control_handler import AppControl

        path = Path(self.config.paths.runtime_dir) / "control.sock"
        await tg.start(serve_control, path, AppControl(self))

    def _terminate(self, scope: anyio.CancelScope) -> None:
        # Cancelling the visit first makes its shielded teardown hang calls up before the engine stops.
        self.visits.cancel_current()
        scope.cancel()

    def stop(self) -> None:
        """Shut down as SIGTERM does: the visit's teardown runs, the event log drains, then run() returns."""
        self._terminate(self._main_scope)

    async def reload(self) -> dict[str, object]:
        """SIGHUP: a valid new config applies to the next visits; a bad one is refused, the old one stays."""
        if self.config_path is None:
            return {"reloaded": False, "error": "no configuration file"}
        try:
            config, warnings = await anyio.to_thread.run_sync(load_config, self.config_path)
            prompts = await PromptCache(Path(config.paths.cache_dir)).prepare(config.prompts)
        except (ConfigError, IntercomError) as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return {"reloaded": False, "error": str(exc)}
        for warning in warnings:
            log.warning("%s", warning)
        self.config, self.prompts = config, prompts
        self.visit_log.set_codes(_all_codes(config))
        self.visits.reconfigure(config)
        log.info("configuration reloaded from %s", self.config_path)
        return {"reloaded": True}

    async def _hw_loop(self, channel: EventChannel[hw_events.HwEvent]) -> None:
        async with channel.receive:
            async for event in channel.receive:
                match event:
                    case hw_events.ButtonPressed(button=button, at=at):
                        what, visit = self.visits.press(button, at)
                        self.visit_log.event(visit, "BUTTON_PRESSED", button, what)
                    case _:
                        self.visit_log.event("-", type(event).__name__.upper(), "", hw_event_text(event))

    async def _sip_loop(self) -> None:
        async for event in self.sip.events:
            match event:
                case RegistrationChanged(active=active, code=code, reason=reason):
                    self.registered = active
                    self.panel.show(LedState.IDLE if active else LedState.FAULT)
                    log.log(
                        logging.INFO if active else logging.ERROR,
                        "registration %s: %s %s",
                        "up" if active else "down",
                        code,
                        reason,
                    )
                case CallRinging(handle=h):
                    self.visits.route(h, LegRinging)
                case CallAnswered(handle=h):
                    self.visits.route(h, LegAnswered)
                case CallEnded(handle=h, code=code, reason=reason):
                    # route() calls the factory at once, so the closure sees this event's values.
                    self.visits.route(h, lambda leg: LegEnded(leg, code, reason))
                case DtmfReceived(handle=h, digit=digit, method=method, at=at):
                    if not self.visits.route(h, lambda leg: Dtmf(leg, digit, method, at)):
                        log.warning("DTMF from a call no visit owns (%s): ignored", method)
                case IncomingCall(handle=h, remote_uri=uri, allowed=True):
                    if not self.visits.inbound(h, uri):
                        await self._quiet_hangup(h)
                case _:
                    pass

    async def _quiet_hangup(self, handle: CallHandle) -> None:
        try:
            with anyio.fail_after(5):
                await self.sip.hangup(handle)
        except (IntercomError, TimeoutError) as exc:
            log.debug("hangup %r: %s", handle, exc)

    def _refuse(self, request: VisitRequest, prompt: str) -> None:
        self.visit_log.event("-", "PRESS_REFUSED", request.apartment.name, "another visit in progress")

    async def _visit_done(self, result: VisitResult, request: VisitRequest) -> None:
        if result.outcome == "cancelled":  # the runner logs OUTCOME only when its flow finished
            self.visit_log.event(result.visit, "OUTCOME", request.apartment.name, result.outcome, detail=result.detail)
        await self.history.record(make_record(result, request))

    def status(self) -> dict[str, object]:
        return {
            "panel": self.config.panel_name,
            "version": __version__,
            "uptime_seconds": round(time.monotonic() - self.started, 1),
            "registration": {"required": bool(self.config.sip.account.registrar), "active": self.registered},
            "visits": self.visits.status(),
            "relay": {"energized": self.panel.relay.energized, "blocked": self.panel.relay.blocked},
            "door": None if self.panel.door is None else ("open" if self.panel.door.is_open else "closed"),
            "sound_device": self.sip.has_sound_device,
            "pid": os.getpid(),
        }


def _all_codes(config: Config) -> list[str]:
    return [code for apt in config.apartments for code in apt.codes] + list(config.inbound_codes)


@asynccontextmanager
async def running(config: Config, **kwargs: Any) -> AsyncIterator[IntercomApp]:
    """Run the app in the background of the caller's task group (tests, demo, benchmarks)."""
    app = IntercomApp(config, **kwargs)
    async with anyio.create_task_group() as tg:
        tg.start_soon(app.run)
        with anyio.fail_after(60):
            await app.ready.wait()
        try:
            yield app
        finally:
            app.stop()


async def run_app(config: Config, config_path: Path | None = None) -> None:
    await IntercomApp(config, config_path).run()
