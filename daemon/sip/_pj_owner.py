"""The SIP owner thread: the only thread that ever touches pjsua2 (the
``daemon/sip/_pj_*`` modules are the only ones importing it).

Why one thread: pjsua2 aborts the process when called from a thread pjlib does not know, and a pjsua2
callback that waits for the event loop while the loop calls into pjsua2 deadlocks (docs/pjsua2.md, sections 1-2). So
this thread creates the Endpoint with ``threadCnt=0`` and ``mainThreadOnly``, polls ``libHandleEvents``,
runs every command the loop queues, and receives every callback. It only ever *posts* to the loop through
the :class:`~daemon.bridge.LoopBridge`; the loop never blocks on it, it awaits.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import pjsua2 as pj

from daemon.bridge import EventChannel, LoopBridge
from daemon.config import SipConfig
from daemon.errors import SipError
from daemon.sip._addr_watch import AddressWatch
from daemon.sip._command import Command
from daemon.sip._owner_wait import IDLE_WAIT_MS, POLL_MS, name_os_thread, owner_wait_ms
from daemon.sip._pj_call_commands import CallCommands
from daemon.sip._pj_call_states import CallStates
from daemon.sip._pj_calls import CallBook, PjAccount, PjCall
from daemon.sip._pj_connections import InboundConnections
from daemon.sip._pj_inbound import InboundCalls
from daemon.sip._pj_local import LocalPrompts
from daemon.sip._pj_log import PJSIP_LOGGER
from daemon.sip._pj_media import MediaCommands
from daemon.sip._pj_setup import StartInfo, create_account, create_endpoint
from daemon.sip._pjsip_log import PjsipLogRouter
from daemon.sip._registrars import RegisterReply, RegistrarBook, RegistrarProbe
from daemon.sip._teardown_pace import TeardownPace, refusal_budget
from daemon.sip.types import (
    CallHandle,
    CallState,
    DtmfMethod,
    DtmfReceived,
    RegistrationChanged,
    RegistrationFailure,
    SipEvent,
)

__all__ = ["IDLE_WAIT_MS", "POLL_MS", "PjOwner", "StartInfo"]

log = logging.getLogger(__name__)


# Held by the owner thread that has (or is creating) the process's one pjsua2 Endpoint.
ONE_ENDPOINT = threading.Lock()


class PjOwner:
    """Runs in the owner thread, and is the :class:`~daemon.sip._pj_calls.OwnerHooks` every pjsua2 object
    reports to. It is made of parts, each owning its state: :attr:`calls` (dial, hang up, DTMF, deadlines),
    :attr:`inbound` (answer or refuse, paced), :attr:`media` (prompts, recordings, the sound device), :attr:`local`
    (prompts on the panel's own speaker during a call), :attr:`connections` (inbound TCP/TLS), :attr:`states`
    (call and media state callbacks -> events); they share the
    live calls through one :class:`~daemon.sip._pj_calls.CallBook`, and :attr:`pjsip_log` routes pjsip's own
    log. Commands from the loop are functions of this object (``lambda owner: owner.calls.dial(...)``), run on
    this thread by :meth:`_run_command`."""

    def __init__(
        self,
        config: SipConfig,
        bridge: LoopBridge,
        events: EventChannel[SipEvent],
        on_ready: Callable[[StartInfo | None, BaseException | None], None],
        on_finished: Callable[[float], None],
    ) -> None:
        self._config = config
        self._bridge = bridge
        self._on_ready = on_ready
        self._on_finished = on_finished
        self._commands: queue.SimpleQueue[Command[Any]] = queue.SimpleQueue()
        self._stop = False
        self._ep: Any = None
        self._accounts: list[PjAccount] = []  # one per registrar, in order (one direct-IP account without any)
        self.registrars = RegistrarBook(config.account.registrars, config.account.failover_seconds, time.monotonic())
        self._probe: RegistrarProbe | None = None
        self._active_registrar: int | None = None
        self._addr_watch: AddressWatch | None = None
        self.address_changes = 0  # how often pjsua2 was told this host's addresses changed
        self._book = CallBook(events)
        self.pjsip_log = PjsipLogRouter(PJSIP_LOGGER)
        self._pace = TeardownPace(refusal_budget(config.max_calls))
        self.inbound = InboundCalls(config, self._book, self._pace)
        self.media = MediaCommands(self._book, self)
        self.local = LocalPrompts(self._book, self, bridge)
        self.calls = CallCommands(self._book, self, self.inbound, config.media_timeout_seconds)
        self.connections = InboundConnections(self.calls.native)
        self.states = CallStates(self._book, self.calls, self.media, self.local, self._pace)
        # Replaced whole (a frozen value) on each registration change; the loop reads the reference.
        self.registration = self.registrars.snapshot()
        # Read by the pjsua2 callback guard (OwnerHooks):
        self.owner_thread_id = 0
        self.wrong_thread_callbacks = 0
        self.callback_errors = 0
        self.fault_once = False
        # Set by the loop when it sends a wake datagram, cleared here before the queue is drained, so at
        # most one sits in the SIP socket's receive buffer whatever the command rate: the buffer is for
        # SIP. (When the owner once stalled, a datagram per command filled it and the kernel dropped
        # the far end's responses.)
        self.wake_in_flight = False
        self.turns = 0  # libHandleEvents turns of this thread (tests: an idle owner is not woken 50 times a second)

    # -- thread side: life cycle ---------------------------------------------------------------------
    def submit(self, command: Command[Any]) -> None:
        """Queue a command (any thread). The caller then wakes the poll."""
        self._commands.put(command)

    def claim_wake(self) -> bool:
        """(Loop side) True when the caller should send a wake datagram: none is in flight."""
        if self.wake_in_flight:
            return False
        self.wake_in_flight = True
        return True

    def request_stop(self) -> None:
        self._stop = True

    def run(self) -> None:
        """The owner thread's body: start pjsua2, serve until stopped, then always shut down cleanly."""
        self.owner_thread_id = threading.get_ident()
        name_os_thread(b"sip-owner")
        if not ONE_ENDPOINT.acquire(blocking=False):
            # pjsua2 allows one Endpoint per process, and a second one aborts it (a pj_thread_this assertion):
            # refused while another engine's owner thread has not finished (e.g. its stop timed out).
            self._bridge.call(
                self._on_ready,
                None,
                SipError(
                    "SIP start-up failed: another SIP engine in this process has not stopped (one pjsua2 Endpoint "
                    "per process)"
                ),
            )
            self._bridge.call(self._on_finished, 0.0)
            return
        destroy_seconds = 0.0
        try:
            try:
                info = self._start()
            except pj.Error as exc:
                self._bridge.call(self._on_ready, None, SipError("SIP start-up failed", info=exc.info()))
                return
            except Exception as exc:
                self._bridge.call(self._on_ready, None, SipError(f"SIP start-up failed: {exc!r}"))
                return
            self._bridge.call(self._on_ready, info, None)
            while not self._stop:
                try:
                    self._ep.libHandleEvents(self._wait_ms())
                    self._turn()
                except Exception as exc:
                    # As text (see _pj_calls._guard): a kept traceback would keep pjsua2 objects alive.
                    log.error("sip owner: error in its loop; going on:\n%s", "".join(traceback.format_exception(exc)))
                    exc.__traceback__ = None
        finally:
            destroy_seconds = self._shutdown()
            ONE_ENDPOINT.release()
            self._bridge.call(self._on_finished, destroy_seconds)

    def _start(self) -> StartInfo:
        self._ep, info = create_endpoint(self._config, self.pjsip_log, self, self.media.talk_settings)
        self.media.ep = self._ep
        self.media.has_sound_device = info.has_sound_device
        self.local.ep, self.local.has_sound_device = self._ep, info.has_sound_device
        self.media.sound_device_index = info.sound_device_index
        count = max(1, len(self._config.account.registrars))
        self._accounts = [create_account(self._config, info.transport_id, self, i) for i in range(count)]
        self.calls.account = self._accounts[0]
        self._addr_watch = AddressWatch()
        if self._config.account.registrars:
            self._probe = RegistrarProbe(self.registrars, self._config.bind_address, self._config.transport)
        self.calls.max_calls = min(self._config.max_calls, info.pjsua.max_calls)
        return info

    def _wait_ms(self) -> int:
        """How long the next libHandleEvents may wait (daemon/sip/_owner_wait.py)."""
        now = time.monotonic()
        due = [self.media.next_due()]
        if self._probe is not None:
            due.append(self._probe.next_due(now))
        if self._addr_watch is not None:
            due.append(self._addr_watch.next_due())
        busy = bool(self._book.records) or self.media.clock_running
        return owner_wait_ms(now, commands_waiting=not self._commands.empty(), busy=busy, deadlines=due)

    def _turn(self) -> None:
        """Work between two polls: commands, deferred inbound answers/refusals, players, call deadlines."""
        self.turns += 1
        self.wake_in_flight = False  # before draining: a command queued after this sends a new wake
        # Only the commands already queued: loop tasks issuing commands back to back refill the queue as
        # fast as it drains, and draining to empty then starved libHandleEvents (no SIP was read at all).
        for _ in range(self._commands.qsize()):
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                break
            self._run_command(command)
        self.inbound.settle_pending()
        now = time.monotonic()
        self.media.upkeep(now)
        self.local.upkeep(now)
        # The clock also runs while one of our prompts plays on the card ("porta aberta" outlives its call).
        self.media.keep_clock(now, bool(self._book.records) or self.local.playing)
        self.calls.check_deadlines(now)
        self.connections.reap(self._ep, now)
        self._watch_registrars(now)
        if self._addr_watch is not None and self._addr_watch.poll(now):
            self._on_address_change()
        self.pjsip_log.flush(now)

    def _on_address_change(self) -> None:
        """This host's addresses or links changed: pjsua2 rebuilds its transports (a socket bound to an address
        that is gone, a Via and Contact naming it) and every account registers again from the new address. Calls
        in progress are kept and re-INVITEd from the new address (pjsua's default ipChangeConfig; tested: they
        survive), and the log says how many."""
        self.address_changes += 1
        calls = len(self._book.records)
        log.warning(
            "sip: this host's addresses or links changed; rebuilding transports, registering again, "
            "re-INVITEing %d call(s) in progress from the new address",
            calls,
        )
        try:
            self._ep.handleIpChange(pj.IpChangeParam())
        except pj.Error as exc:
            log.error("sip: handleIpChange failed: %s", exc.info())

    # -- registrars: failover and return ----------------------------------------------------------------
    def dial(self, uri: str, ring_timeout: float | None) -> CallHandle:
        """Dial ``uri`` through the registrar in use (a URI at a registrar's address is dialled at the
        active one's); a direct-IP URI is dialled as it is, registrars up or not."""
        index, routed = self.registrars.route(uri)
        if routed != uri:
            log.info("sip: %s dialled through registrar %s as %s", uri, self.registrars.states[index].uri, routed)
        self.calls.account = self._accounts[min(index, len(self._accounts) - 1)]
        return self.calls.dial(routed, ring_timeout)

    def _watch_registrars(self, now: float) -> None:
        if self._probe is None:
            return
        for index in self._probe.turn(now):
            log.warning("sip: registrar %s answers again; registering", self.registrars.states[index].uri)
            try:
                self._accounts[index].setRegistration(True)
            except pj.Error as exc:  # a REGISTER still pending: pjsua's own retry takes over
                log.info("sip: re-register with %s: %s", self.registrars.states[index].uri, exc.info())
        for index in self.registrars.check(now):
            state = self.registrars.states[index]
            log.warning("sip: registrar %s: %s; passed over", state.uri, state.reason)
            self._publish(index)

    def _publish(self, about: int) -> None:
        """Post the panel's registration after a change concerning registrar ``about``."""
        before = self._active_registrar
        self._active_registrar = self.registrars.active
        snap = self.registration = self.registrars.snapshot(about)
        if before != self._active_registrar and len(self.registrars.states) > 1:
            if self._active_registrar is None:
                log.error("sip: no registrar answers; only direct-IP residents can be called")
            else:
                log.warning("sip: registrar in use: %s", snap.registrar)
        self._book.emit(
            RegistrationChanged(snap.active, snap.code, snap.reason, snap.expires, snap.registrar, snap.failure)
        )

    def _run_command(self, command: Command[Any]) -> None:
        if command.abandoned:
            return
        result: Any = None
        error: BaseException | None = None
        try:
            result = command.fn(self)
        except pj.Error as exc:
            error = SipError(f"{command.name} failed", info=exc.info(), status=int(exc.status))
        except SipError as exc:
            error = exc
        except Exception as exc:
            log.error("sip owner: command %s raised:\n%s", command.name, "".join(traceback.format_exception(exc)))
            error = SipError(f"{command.name} failed: {exc!r}")
        if error is not None:
            # No traceback travels to the loop: its frames could hold a Call past libDestroy.
            error.__traceback__ = error.__context__ = error.__cause__ = None
        self._bridge.call(command.finish, result, error)

    def _shutdown(self) -> float:
        """Hang up everything, release every pjsua2 object, then libDestroy. Returns libDestroy's seconds."""
        ep, self._ep = self._ep, None
        if ep is None:
            return 0.0
        self.calls.hangup_everything("engine shutdown")  # a method: a loop variable here would keep a Call
        deadline = time.monotonic() + 0.3
        while self._book.records and time.monotonic() < deadline:
            ep.libHandleEvents(10)
        self.local.release_all(ep)
        self.local.ep = None
        self.media.release_all(ep)
        self.media.ep = None
        self._book.records.clear()  # calls pjsua could not end in time: released here, before libDestroy
        self.inbound.clear()
        self.connections.clear()
        while True:  # late commands are answered, not left waiting
            try:
                self._bridge.call(self._commands.get_nowait().finish, None, SipError("SIP engine stopped"))
            except queue.Empty:
                break
        for account in self._accounts:
            try:
                account.shutdown()
            except pj.Error as exc:
                log.warning("sip: account shutdown: %s", exc.info())
        self._accounts.clear()
        self.calls.account = None
        if self._probe is not None:
            self._probe.close()
        if self._addr_watch is not None:
            self._addr_watch.close()
        gc.collect()  # any Call/player caught in a reference cycle must go before libDestroy
        started = time.monotonic()
        try:
            # NO_RX_MSG: do not wait ~1 s for transactions (un-REGISTER, BYE answers) to complete.
            ep.libDestroy(pj.PJSUA_DESTROY_NO_RX_MSG)
        except pj.Error as exc:
            log.error("sip: libDestroy failed: %s", exc.info())
        # The Endpoint goes now: a traceback that caught this frame (a warning raised in gc.collect above)
        # would keep it, and the next Endpoint() in the process would abort.
        del ep
        seconds = time.monotonic() - started
        log.info("sip: stopped (libDestroy %.0f ms)", seconds * 1000)
        return seconds

    # -- callbacks (OwnerHooks), all on this thread --------------------------------------------------
    def on_incoming(self, call: PjCall, source: str) -> None:
        self.inbound.on_incoming(call, source)

    def on_reg_state(self, index: int, active: bool, expires: int, reply: RegisterReply) -> None:
        if index >= len(self.registrars.states):  # an account without a registrar: nothing to report
            return
        code, reason, failure = reply.classify(active)
        log.info(
            "sip: registration with %s %s: %s (expires %d s)",
            self.registrars.states[index].uri,
            "active" if active else "inactive",
            reason if failure is RegistrationFailure.TRANSPORT else f"{code} {reason}",
            expires,
        )
        self.registrars.on_registration(index, active, code, reason, expires, now=time.monotonic(), failure=failure)
        self._publish(index)

    def on_call_state(self, generation: int, state: CallState, code: int, reason: str, local: bool) -> None:
        self.states.on_call_state(generation, state, code, reason, local)

    def on_media_state(self, generation: int, active: bool) -> None:
        self.states.on_media_state(generation, active)

    def on_transport_state(self, handle: Any, state: int) -> None:
        self.connections.on_state(handle, state, time.monotonic())

    def on_invite_sent(self, generation: int, branch: str) -> None:
        self.calls.note_invite_branch(generation, branch)

    def on_dtmf(self, generation: int, digit: str, method: int) -> None:
        rec = self._book.records.get(generation)
        if rec is not None:
            how: DtmfMethod = "info" if method == pj.PJSUA_DTMF_METHOD_SIP_INFO else "rfc2833"
            # Never the digit: digits spell door codes, and logs are read by more people than residents.
            log.debug("sip %s: DTMF via %s", rec.handle, how)
            self._book.emit(DtmfReceived(rec.handle, digit, how))
