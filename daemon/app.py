"""The daemon: one anyio loop, one task group, everything else owned by it. This module is wiring.

Start-up order is the order of trust: config (already valid), the panel with the relay released, prompts
synthesized into the cache (a press never waits for synthesis), the SIP engine up, then READY to systemd.
Shutdown runs the other way, shielded: calls hung up, relay released, history flushed.

Events flow one way: gpiozero and pjsua2 threads -> the bridge -> the visit router (:mod:`daemon.flow.router`)
-> the visit's runner -> the ports (:mod:`daemon.visit_adapters`) -> the panel and the SIP engine. The app
only forwards events and answers the outside (:class:`daemon.facade.AppFacade`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from daemon import __version__, heap
from daemon.bridge import EventChannel, LoopBridge
from daemon.config import Config, check_config, dial_problems, directory_csv, uri_problems
from daemon.config_changes import split_changes, with_live_settings
from daemon.errors import IntercomError, SipError, hw_errors
from daemon.facade import AppFacade, OpenResult, PressResult, ReloadResult, SelftestRow
from daemon.flow.ports import VisitPorts
from daemon.flow.router import VisitRequest, VisitRouter
from daemon.flow.runner import VisitResult
from daemon.history import History
from daemon.lockouts import LOCKOUTS_FILE, SavedLockouts, load_lockouts, save_lockouts
from daemon.prompts import PromptCache, PromptSet
from daemon.service import handle_signals, sd_notify, watchdog_task
from daemon.sip import CallHandle, SipEngine
from daemon.speaker_route import SpeakerRoute
from daemon.visit_adapters import (
    PanelPorts,
    SipCalls,
    open_record,
    open_relay,
    visit_progress_record,
    visit_record,
    visit_started_record,
)
from daemon.visitlog import VisitLog
from hw import events as hw_events
from hw.panel import Panel
from hw.pins import make_pin_factory

if TYPE_CHECKING:
    from daemon.mqtt.link import MqttLink

__all__ = ["IntercomApp", "as_facade", "run_app", "running"]

log = logging.getLogger(__name__)


class IntercomApp:
    """Wires the panel, the SIP engine, prompts, history and control around the visit router."""

    def __init__(
        self, config: Config, config_path: Path | None = None, *, pin_factory: Any = None, settle_heap: bool = False
    ) -> None:
        """``settle_heap``: freeze what start-up left alive at READY (:mod:`daemon.heap`): a process-wide setting,
        for the entry points (``intercomd run``, the demo), not for an app a test runs."""
        self.config = config  # the config in force: after a reload, the running one with the new live sections
        self.config_path = config_path
        self.started = time.monotonic()
        self._pin_factory = pin_factory
        self._settle_heap = settle_heap
        self.heap_frozen = 0  # objects start-up left alive, frozen at READY (settle_heap), else 0
        self.ready = anyio.Event()
        self.panel: Panel
        self.sip: SipEngine
        self.prompts: PromptSet
        self.visit_history: History
        self.visit_log: VisitLog
        self.visits: VisitRouter
        self._ports: VisitPorts
        self.speaker_route: SpeakerRoute  # who plays the speaker: PortAudio, or a talk call's conference (_wire_visits)
        self._manual: list[CallHandle] = []  # calls placed by dial(), ended by hangup() or their time limit
        self._tg: anyio.abc.TaskGroup | None = None  # the main task group, once running
        self._lockouts_path = Path()
        self._saved: set[str] = set()  # apartments with a count or lockout in the file (cleared by a right code)
        self._main_scope = anyio.CancelScope()  # replaced by the main task group's scope once running
        self.mqtt: MqttLink | None = None

    @property
    def registered(self) -> bool:
        return self.visits.registered

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
                # post_soon only queues the event for the loop: the dispatcher hands a press straight to the loop,
                # with no outbox thread in between (a thread switch and a blocking wait less on the press's path).
                panel = Panel(cfg.panel, pin_factory=factory, post=hw_channel.post_soon, post_never_blocks=True)
                self.panel = stack.enter_context(panel)
            self.visit_log = VisitLog.in_state_dir(state_dir)
            self.visit_history = History.in_state_dir(state_dir)
            self._lockouts_path = state_dir / LOCKOUTS_FILE
            lockouts = await anyio.to_thread.run_sync(load_lockouts, self._lockouts_path)
            self._saved = set(lockouts.apartments)
            await stack.enter_async_context(self.visit_history)
            self.prompts = await PromptCache(Path(cfg.paths.cache_dir)).prepare(cfg.prompts)
            self.sip = await stack.enter_async_context(SipEngine(cfg.sip, bridge, cfg.audio))
            self._wire_visits(cfg, lockouts)
            # The event-log writer lives outside the main task group: SIGTERM cancels that group, and the
            # visit's shielded teardown still logs its HANGUP and OUTCOME, which must reach events.jsonl.
            async with anyio.create_task_group() as writer:
                await writer.start(self.visit_log.run)
                try:
                    async with anyio.create_task_group() as tg:
                        self._main_scope, self._tg = tg.cancel_scope, tg
                        await self._serve(tg, hw_channel)
                        if self._settle_heap:
                            # Before READY: its one full collection is a pause no visit can be waiting behind.
                            self.heap_frozen = heap.settle()
                            log.info("heap settled: %d objects left by start-up frozen", self.heap_frozen)
                        sd_notify(f"READY=1\nSTATUS=ready: {len(cfg.apartments)} apartments, version {__version__}")
                        log.info(
                            "intercom ready (%s, %.2f s after start)", cfg.panel_name, time.monotonic() - self.started
                        )
                        self.ready.set()
                    sd_notify("STOPPING=1")
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.visit_log.aclose()  # drains the queue, then run() returns

    def _wire_visits(self, cfg: Config, lockouts: SavedLockouts) -> None:
        """The visit router and the ports it drives (the engine and the panel are up)."""
        if self.sip.info is not None:
            parallel = [(a.name, len(a.residents)) for a in cfg.apartments if a.strategy == "parallel"]
            for warning in self.sip.info.ring_groups_beyond_limit(parallel):
                log.warning("%s", warning)
        # The one place deciding who plays the speaker: PortAudio, or a talk call's conference on a sound device.
        self.speaker_route = SpeakerRoute(
            self.panel.speaker, self.sip if self.sip.has_sound_device else None, level=cfg.audio.volume
        )
        panel_ports = PanelPorts(self.panel, self.prompts, self.speaker_route)
        tones = panel_ports if cfg.keypad is not None else None
        self._ports = VisitPorts(
            SipCalls(self.sip, self.speaker_route),
            panel_ports,
            panel_ports,
            panel_ports,
            panel_ports,
            tones=tones,
        )
        self.visits = VisitRouter(
            cfg,
            self._ports,
            visit_log=self.visit_log,
            new_id=self.visit_log.new_visit_id,
            registered=not cfg.sip.account.registrar,  # direct-IP panels have nothing to register
            on_start=self._visit_started,
            on_done=self._visit_done,
            on_progress=self._visit_progress,
            lockouts=lockouts.apartments,
            pin_guard=lockouts.pins,
            on_pin_guard_change=self._save_lockouts,
            on_open=self._record_open,
        )

    async def _serve(self, tg: anyio.abc.TaskGroup, hw_channel: EventChannel[hw_events.HwEvent]) -> None:
        """Every long-lived task of the app, in the main task group; returns once each has started."""
        cfg = self.config
        tg.start_soon(self.visit_history.run)
        tg.start_soon(self.panel.run)
        tg.start_soon(self._forward_hw, hw_channel)
        tg.start_soon(self._forward_sip)
        tg.start_soon(self.visits.run)
        tg.start_soon(watchdog_task)
        terminate = partial(self._terminate, tg.cancel_scope)
        await tg.start(partial(handle_signals, terminate=terminate, reload=self.reload))
        await self._start_control(tg)
        if cfg.mqtt is not None:  # does not wait for the broker: a panel works without it
            # Imported here: aiomqtt, paho and ssl cost ~14 MB of resident memory that a panel without MQTT keeps.
            from daemon.mqtt.link import run_mqtt

            self.mqtt = await tg.start(partial(run_mqtt, cfg.mqtt, self, panel_name=cfg.panel_name))

    async def _start_control(self, tg: anyio.abc.TaskGroup) -> None:
        from daemon.control import AppControl, serve_control

        path = Path(self.config.paths.runtime_dir) / "control.sock"
        await tg.start(serve_control, path, AppControl(self))

    def _terminate(self, scope: anyio.CancelScope) -> None:
        # Cancelling the visit first makes its shielded teardown hang calls up before the engine stops.
        self.visits.cancel_current()
        scope.cancel()

    def stop(self) -> None:
        """Shut down as SIGTERM does: the visit's teardown runs, the event log drains, then run() returns."""
        self._terminate(self._main_scope)

    # -- events: forwarded unchanged to the router -------------------------------------------------------

    async def _forward_hw(self, channel: EventChannel[hw_events.HwEvent]) -> None:
        async with channel.receive:
            async for event in channel.receive:
                self.visits.hw_event(event)

    async def _forward_sip(self) -> None:
        async for event in self.sip.events:
            self.visits.sip_event(event)

    def _visit_started(self, request: VisitRequest) -> None:
        # A row from the start: a crash mid-visit leaves it "in_progress", completed as "interrupted" at the next
        # start. begin() only queues: storage never sits on the visit's path.
        self.visit_history.begin(visit_started_record(request))

    async def _save_lockouts(self) -> None:
        # A restart must not forgive wrong codes. Bounded: a hung file system costs the count, not the visit.
        lockouts = self.visits.lockouts
        saved = SavedLockouts(lockouts, self.visits.pins.guard)
        try:
            # Shielded: a stop that lands just after a lockout began (SIGTERM, a crash-looping watchdog) must not
            # cancel its save, or the restart forgives it. Bounded by the second all the same.
            with anyio.CancelScope(shield=True), anyio.fail_after(1):
                await anyio.to_thread.run_sync(save_lockouts, self._lockouts_path, saved, abandon_on_cancel=True)
        except (OSError, TimeoutError) as exc:
            log.warning("lockouts %s: not saved (%s)", self._lockouts_path, exc)
        self._saved = {name for name, lockout in lockouts.items() if lockout.wrong_in_a_row or lockout.locked_until}

    def _visit_progress(self, result: VisitResult, request: VisitRequest) -> None:
        # Answered, door opened: the row says so at once, so kill -9 after the door opened never leaves a row
        # claiming it stayed shut.
        self.visit_history.begin(visit_progress_record(result, request))

    async def _visit_done(self, result: VisitResult, request: VisitRequest) -> None:
        lockout = result.state.lockout
        if lockout.wrong_in_a_row or lockout.locked(time.monotonic()) or request.apartment.name in self._saved:
            await self._save_lockouts()
        await self.visit_history.record(visit_record(result, request))

    def _record_open(self, door: str, who: str, how: str) -> None:
        """A door opened outside a visit: a history row of its own saying who, which door and how."""
        self.visit_history.note(open_record(self.visit_log.new_visit_id(), door, who, how))

    # -- the facade (daemon.facade.AppFacade) ---------------------------------------------------------------

    def directory_csv(self) -> str:
        return directory_csv(self.config.apartments)

    def button_names(self) -> list[str]:
        return [button.name for button in self.config.buttons]

    def press(self, button: str, *, source: str) -> PressResult:
        what, visit = self.visits.press(button, source=source)
        return PressResult(what, visit)

    def open_door(self, door: str | None = None, *, by: str) -> OpenResult:
        relay = self.panel.relay_for(door or "")
        if relay is None:
            names = ", ".join(self.panel.relays)
            result = OpenResult(False, f"unknown door {door!r}; this panel has {names}")
        else:
            opened = open_relay(relay)
            result = OpenResult(opened.opened, opened.reason)
        name = relay.door if relay is not None else door
        how = "mqtt" if by == "mqtt" else "control"
        if result.opened:
            self.visit_log.event("-", "DOOR_OPEN", by, f"{name} opened on request", door=name, method=how)
            self._record_open(str(name), by, how)
        else:
            self.visit_log.event("-", "DOOR_OPEN_REFUSED", by, result.reason, door=name, method=how)
        return result

    async def dial(self, uri: str) -> str:
        # The configuration's own checks: a URI pjsua cannot dial is refused in words, before pjsua's
        # "pjsua_call_make_call(acc.getId(), ...) error: ... [../src/pjsua2/call.cpp:712]" reaches the client.
        problems = uri_problems("uri", uri) + dial_problems("uri", uri, self.config.sip.transport)
        if problems:
            raise SipError(f"not dialable: {'; '.join(problems)}")
        # Bounded like a visit's call (the ring timeout, then max_call_seconds): a few forgotten test dials
        # ringing for ever held every call slot, and each visitor then heard "out of service".
        timing = self.config.timing
        handle = await self.sip.dial(uri, ring_timeout=timing.ring_timeout_seconds)
        self._manual.append(handle)
        if self._tg is not None:
            self._tg.start_soon(self._end_manual_call, handle, timing.ring_timeout_seconds + timing.max_call_seconds)
        return str(handle.generation)

    async def _end_manual_call(self, handle: CallHandle, after: float) -> None:
        await anyio.sleep(after)
        if handle in self._manual:
            self._manual.remove(handle)
            with contextlib.suppress(SipError):  # already over
                await self.sip.hangup(handle)

    async def hangup(self) -> dict[str, object]:
        """Ends the visit in progress (its teardown hangs up its calls) and every call placed by dial()."""
        cancelled = self.visits.cancel_current()
        ended = 0
        for handle in self._manual:
            try:
                await self.sip.hangup(handle)
                ended += 1
            except SipError:
                pass  # already over
        self._manual.clear()
        return {"hung_up": ended, "visit_cancelled": cancelled}

    def status(self) -> dict[str, object]:
        return {
            "panel": self.config.panel_name,
            "version": __version__,
            "uptime_seconds": round(time.monotonic() - self.started, 1),
            "registration": {
                "required": bool(self.config.sip.account.registrar),
                "active": self.registered,
                "registrar": self.sip.registration.registrar,  # the one in use (of sip.account.registrars)
                # Why not active: "refused" (the registrar's own status), "no_answer", "transport" (a local
                # error: no route, connection refused; no SIP status), or "none".
                "failure": self.sip.registration.failure.value,
            },
            "visits": self.visits.status(),
            "relay": {"energized": self.panel.relay.energized, "blocked": self.panel.relay.blocked},
            "doors": {
                name: {
                    "energized": relay.energized,
                    "blocked": relay.blocked,
                    "contact": None
                    if (contact := self.panel.contacts.get(name)) is None
                    else ("open" if contact.is_open else "closed"),
                }
                for name, relay in self.panel.relays.items()
            },
            "door": None if self.panel.door is None else ("open" if self.panel.door.is_open else "closed"),
            "sound_device": self.sip.has_sound_device,
            "pjsua2": None if self.sip.info is None else dataclasses.asdict(self.sip.info),
            "speaker": dataclasses.asdict(self.panel.speaker.health()),
            "history": dataclasses.asdict(self.visit_history.health()),
            "event_log": dataclasses.asdict(self.visit_log.health()),
            "tamper": None if self.panel.tamper is None else self.panel.tamper.tampered,
            "mqtt": None if self.mqtt is None else dataclasses.asdict(self.mqtt.health()),
            "pid": os.getpid(),
        }

    async def history(self, limit: int) -> list[dict[str, object]]:
        return [dataclasses.asdict(r) for r in await self.visit_history.recent(max(1, min(limit, 1000)))]

    def events(self) -> AbstractAsyncContextManager[AsyncIterator[dict[str, object]]]:
        return self.visit_log.event_dicts()

    async def selftest(self) -> list[SelftestRow]:
        from daemon.selftest import run_selftest

        rows = await run_selftest(self.panel, self.sip, self.config, self.speaker_route.play_check_tone)
        for what, health in (("history", await self.visit_history.check()), ("event log", self.visit_log.health())):
            rows.append(SelftestRow(what, health.ok, health.detail))
        if self.mqtt is not None:
            h = self.mqtt.health()
            rows.append(SelftestRow("mqtt broker", h.connected, f"{h.detail}; {h.queued} queued, {h.dropped} dropped"))
        return rows

    async def wait_visits(self, count: int) -> None:
        """Return once ``count`` visits have ended and been recorded (callers bound it with a timeout)."""
        await self.visits.wait_completed(count)

    async def reload(self) -> ReloadResult:
        """SIGHUP: live settings apply to the next visit; the rest are named as needing a restart. A bad new
        file is refused and the running configuration stays whole."""
        if self.config_path is None:
            return ReloadResult(False, error="started without a configuration file: nothing to reload")
        try:
            # The same checks as check-config and start-up (file, ranges, this host), off the loop.
            new, warnings = await anyio.to_thread.run_sync(check_config, self.config_path)
            applied, restart = split_changes(self.config, new)
            prompts = self.prompts
            if any(key.startswith("prompts") for key in applied):
                # Into the running cache directory: paths.* only change at a restart.
                prompts = await PromptCache(Path(self.config.paths.cache_dir)).prepare(new.prompts)
        except IntercomError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return ReloadResult(False, error=str(exc))
        for warning in warnings:
            log.warning("%s", warning)
        if not applied and not restart:
            log.info("reload: %s has no change", self.config_path)
            return ReloadResult(True, unchanged=True)
        self.config, self.prompts = with_live_settings(self.config, new), prompts
        panel_ports = PanelPorts(self.panel, prompts, self.speaker_route)
        tones = panel_ports if self._ports.tones is not None else None
        self._ports = dataclasses.replace(self._ports, speaker=panel_ports, prompts=panel_ports, tones=tones)
        self.visits.reconfigure(self.config, self._ports)
        log.info("configuration reloaded from %s: applied %s", self.config_path, ", ".join(applied) or "nothing")
        if restart:
            log.warning("reload: changed but only applied at the next restart: %s", ", ".join(restart))
        return ReloadResult(True, applied=tuple(applied), restart_needed=tuple(restart))


def as_facade(app: IntercomApp) -> AppFacade:
    """The app as its adapters may see it (and mypy's check that it implements the facade exactly)."""
    return app


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
    await IntercomApp(config, config_path, settle_heap=True).run()
