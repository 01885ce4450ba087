"""The loop-side face of the SIP engine: ``async with SipEngine(config, bridge) as engine``.

Design (docs/pjsua2.md gives the rules and the measurements behind them):

* One owner thread (:mod:`daemon.sip._pj_owner`) makes every pjsua2 call; this module never imports pjsua2
  and never touches a pjsua2 object.
* The loop sends a :class:`~daemon.sip._command.Command` through a thread-safe queue, wakes the owner's
  ``libHandleEvents`` poll with a CRLF datagram to the engine's own UDP transport (0.2 ms round trip
  instead of up to one poll period), and *awaits* the result with a timeout. The loop NEVER blocks on the
  owner thread: it never joins it, never waits on a lock it holds, never calls it synchronously.
* The owner posts each event straight into an :class:`~daemon.bridge.EventChannel` (one crossing of the
  thread boundary), which the application iterates as :attr:`SipEngine.events`; results of commands come
  back through the :class:`~daemon.bridge.LoopBridge`.
* Commands are functions of the owner, ``Callable[[PjOwner], T]``, so mypy checks each one against the
  owner's parts (``owner.calls``, ``owner.media``) although this module never imports pjsua2 at run time.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from daemon.bridge import EventChannel, LoopBridge
from daemon.config import AudioConfig, SipConfig
from daemon.errors import SipError
from daemon.sip._command import Command
from daemon.sip._options import options_ping
from daemon.sip._pjsua_info import PjsuaInfo
from daemon.sip._talk_audio import talk_media_settings
from daemon.sip.types import (
    CallHandle,
    CallSnapshot,
    LocalPromptEnded,
    RegistrationSnapshot,
    SipEvent,
    StreamStats,
)

if TYPE_CHECKING:
    from daemon.sip._pj_owner import PjOwner, StartInfo

__all__ = ["SipEngine"]

log = logging.getLogger(__name__)

T = TypeVar("T")

COMMAND_TIMEOUT = 5.0  # a healthy owner answers in well under 1 ms; 5 s means it is stuck
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0  # hang-ups + libDestroy(NO_RX_MSG) take ~0.1 s


class SipEngine:
    """A SIP user agent for the panel, driven from the anyio loop with plain async methods."""

    def __init__(self, config: SipConfig, bridge: LoopBridge, audio: AudioConfig | None = None) -> None:
        """``audio``: talk mode's echo cancellation and card latency on a sound device (None: off)."""
        self._config = config
        self._audio = audio
        self._bridge = bridge
        self._channel: EventChannel[SipEvent] | None = None
        self._owner: PjOwner | None = None  # imported when the engine starts: importing this loads no pjsua2
        self._thread: threading.Thread | None = None
        self._wake_socket: socket.socket | None = None
        self._wake_address: tuple[str, int] = ("127.0.0.1", 0)
        self._ready = anyio.Event()
        self._finished = anyio.Event()
        self._start_error: BaseException | None = None
        self.sip_port = 0
        self.info: PjsuaInfo | None = None  # which pjsua2 is loaded: set once the engine has started
        self.destroy_seconds = 0.0  # how long libDestroy took at the last exit
        self.wake_failures = 0  # wake datagrams the kernel refused (the command then waits for the owner's poll)

    # -- life cycle ------------------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        from daemon.sip._pj_owner import PjOwner

        self._channel = EventChannel[SipEvent](self._bridge)
        self._owner = PjOwner(self._config, self._bridge, self._channel, self._on_ready, self._on_finished)
        self._owner.media.talk_settings = talk_media_settings(self._audio)
        # The single long-lived thread of the SIP engine: pjsua2 must only ever be called from one
        # pjlib-registered thread that is not the loop's. Not a daemon thread: it must reach libDestroy.
        self._thread = threading.Thread(target=self._owner.run, name="sip-owner")
        self._thread.start()
        with anyio.fail_after(START_TIMEOUT):
            await self._ready.wait()
        if self._start_error is not None:
            await self._wait_finished()
            self._close_channel()
            raise self._start_error
        self._wake_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._wake_socket.setblocking(False)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Shielded: a cancelled app must still hang up its calls and destroy pjsua2 (or the process aborts).
        with anyio.CancelScope(shield=True):
            if self._owner is not None:
                self._owner.request_stop()
                self._wake()
            await self._wait_finished()
            if self._wake_socket is not None:
                self._wake_socket.close()
            self._close_channel()

    def _close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel.receive.close()  # events still buffered are dropped with the engine

    async def _wait_finished(self) -> None:
        with anyio.move_on_after(STOP_TIMEOUT) as scope:
            await self._finished.wait()
            # The owner's very last act was to post _on_finished; give it a moment to return, polling
            # rather than join()ing so the loop never blocks on it.
            while self._thread is not None and self._thread.is_alive():  # noqa: ASYNC110 - a thread has no Event
                await anyio.sleep(0.002)
        if scope.cancelled_caught:
            log.error("sip: owner thread did not stop within %.0f s", STOP_TIMEOUT)

    def _on_ready(self, info: StartInfo | None, error: BaseException | None) -> None:  # on the loop thread
        if info is not None:
            self.sip_port = info.sip_port
            self._wake_address = info.wake_address
            self.info = info.pjsua
        self._start_error = error
        self._ready.set()

    def _on_finished(self, destroy_seconds: float) -> None:  # on the loop thread
        self.destroy_seconds = destroy_seconds
        self._finished.set()

    def _deliver(self, event: SipEvent) -> None:
        """Test hook: post ``event`` as if the owner thread had (a far end cannot be made to send some)."""
        if self._channel is not None:
            self._channel.post(event)

    # -- plumbing ---------------------------------------------------------------------------------------
    def _wake(self) -> None:
        """End the owner's current poll at once: an idle owner waits up to IDLE_WAIT_MS (1 s). The socket does
        not block; a datagram that fails (counted in :attr:`wake_failures`) or is lost costs one wait at most.
        Not sent while one is in flight: see PjOwner.wake_in_flight."""
        if self._owner is not None and not self._owner.claim_wake():
            return
        if self._wake_socket is not None:
            try:
                self._wake_socket.sendto(b"\r\n", self._wake_address)
            except OSError as exc:
                self.wake_failures += 1
                log.debug("sip: wake datagram failed: %s", exc)

    async def _run(self, name: str, fn: Callable[[PjOwner], T], limit: float = COMMAND_TIMEOUT) -> T:
        if self._owner is None or self._finished.is_set():
            raise SipError(f"{name}: SIP engine is not running")
        command: Command[T] = Command(name, fn)
        self._owner.submit(command)
        self._wake()
        try:
            with anyio.fail_after(limit):
                await command.done.wait()
        except TimeoutError:
            command.abandoned = True
            raise SipError(f"{name}: SIP owner thread did not answer within {limit} s") from None
        if command.error is not None:
            raise command.error
        return command.result  # type: ignore[return-value]

    # -- public API -------------------------------------------------------------------------------------
    @property
    def events(self) -> MemoryObjectReceiveStream[SipEvent]:
        """Every :data:`~daemon.sip.types.SipEvent`, in order. Iterate it from one task."""
        if self._channel is None:
            raise SipError("SIP engine is not started")
        return self._channel.receive

    @property
    def has_sound_device(self) -> bool:
        """pjmedia drives a real sound device (else the null device: a talk call carries no audio at the panel)."""
        return self.info is not None and self.info.sound_device is not None

    @property
    def registration(self) -> RegistrationSnapshot:
        """The last registration state the owner saw (a frozen value it replaces whole)."""
        if self._owner is None:
            return RegistrationSnapshot(bool(self._config.account.registrars), False, 0, "not registered", 0)
        return self._owner.registration

    @property
    def address_changes(self) -> int:
        """How often this host's addresses or links changed and pjsua2 rebuilt its transports (handleIpChange)."""
        return self._owner.address_changes if self._owner is not None else 0

    @property
    def owner_turns(self) -> int:
        """How many times the owner thread has woken from libHandleEvents (idle: about once a second)."""
        return self._owner.turns if self._owner is not None else 0

    @property
    def media_clock_running(self) -> bool:
        """Whether pjmedia's conference clock (the sound device or the null device) runs: only while a call
        exists, and a moment after it (MediaCommands.keep_clock)."""
        return self._owner is not None and self._owner.media.clock_running

    @property
    def fault_counters(self) -> tuple[int, int]:
        """(callbacks seen on a wrong thread, callbacks that raised): both should stay 0."""
        return (self._owner.wrong_thread_callbacks, self._owner.callback_errors) if self._owner else (0, 0)

    async def dial(self, uri: str, ring_timeout: float | None = None) -> CallHandle:
        """Call ``uri``; returns once the INVITE is sent. Unanswered after ``ring_timeout`` seconds, the call
        is cancelled and ends with :class:`CallEnded` code 408, reason "ring timeout...".

        Raises :class:`~daemon.errors.DialError` (``local``, ``status`` 0, ``pj_status``) when pjsua refuses
        the dial here: no free call slot or socket, an undialable URI, no transport for it. Nothing was sent
        and no :class:`CallEnded` follows."""
        return await self._run(f"dial {uri}", lambda o: o.dial(uri, ring_timeout))

    async def hangup(self, handle: CallHandle, status: int | None = None) -> None:
        """CANCEL before answer (outgoing), refuse with ``status`` (incoming), BYE after answer."""
        await self._run(f"hangup {handle}", lambda o: o.calls.hangup(handle, status))

    async def send_dtmf(self, handle: CallHandle, digits: str, method: Literal["rfc2833", "info"] = "rfc2833") -> None:
        await self._run(f"send_dtmf {handle}", lambda o: o.calls.send_dtmf(handle, digits, method))

    async def play(self, handle: CallHandle, wav_path: str, loop: bool = False) -> None:
        """Play a WAV (16-bit PCM) into the call, replacing any prompt playing. Needs active media."""
        await self._run(f"play {handle}", lambda o: o.media.play(handle, str(wav_path), loop))

    async def record(self, handle: CallHandle, wav_path: str) -> None:
        """Record what the far end sends into a WAV file until :meth:`stop_recording` or the call's end."""
        await self._run(f"record {handle}", lambda o: o.media.record(handle, str(wav_path)))

    async def stop_recording(self, handle: CallHandle) -> bool:
        return await self._run(f"stop_recording {handle}", lambda o: o.media.stop_recording(handle))

    async def connect_sound_device(self, handle: CallHandle) -> None:
        """Join the call to the sound card both ways. Raises SipError on a build without a sound device.
        From then until the call ends pjmedia owns the card (:attr:`talk_holds_sound_device`)."""
        await self._run(f"connect_sound_device {handle}", partial(_connect_sound_device, handle=handle))

    @property
    def talk_holds_sound_device(self) -> bool:
        """pjmedia has the card (a sound device, never the null device): a call's audio is bridged to it, a
        prompt started with :meth:`play_local` still plays, or pjmedia has not closed it since. The panel's
        prompts then go through :meth:`play_local`, never through PortAudio (a Pi's ``hw:`` device opens once).
        Updated by the owner thread on each turn, and before it answers ``connect_sound_device`` or reports a
        call's end or a local prompt's."""
        return self._owner is not None and self._owner.local.card_held

    async def play_local(self, wav_path: str, *, level: float = 1.0, limit: float) -> LocalPromptEnded:
        """Play a WAV (16-bit PCM) on the panel's own speaker through pjsua2's conference, mixed with the call's
        audio, at ``level`` (1.0: unchanged); returns when it ended. Only while :attr:`talk_holds_sound_device`
        (SipError otherwise: the card is PortAudio's then). Cancelling the caller stops it
        within a conference tick; a prompt still playing after ``limit`` seconds is stopped and SipError raised."""
        waiter = _LocalWaiter()
        # Shielded (and bounded by the command timeout): a cancel while the owner starts the player would
        # leave a prompt nobody stops.
        with anyio.CancelScope(shield=True):
            playback = await self._run("play_local", lambda o: o.local.play(str(wav_path), level, waiter.finish))
        try:
            with anyio.fail_after(limit):
                await waiter.done.wait()
        except TimeoutError:
            await self._stop_local(playback)
            raise SipError(f"play_local: {wav_path} still playing after {limit:g} s; stopped") from None
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._stop_local(playback)
            raise
        assert waiter.result is not None  # set with done
        return waiter.result

    async def _stop_local(self, playback: int) -> None:
        try:
            await self._run("stop_local", lambda o: o.local.stop(playback))
        except SipError as exc:  # the engine stopping (which stops every prompt) or a stuck owner
            log.warning("sip: stopping a local prompt: %s", exc)

    async def snapshot(self, handle: CallHandle) -> CallSnapshot:
        return await self._run(f"snapshot {handle}", lambda o: o.calls.snapshot(handle))

    async def stream_stats(self, handle: CallHandle) -> StreamStats | None:
        """The call's audio stream counters (jitter buffer lost/discarded/empty, RTP received); None before media."""
        return await self._run(f"stream_stats {handle}", lambda o: o.calls.stream_stats(handle))

    async def live_calls(self) -> list[CallHandle]:
        return await self._run("live_calls", lambda o: o.calls.live_calls())

    async def ping(self) -> None:
        """A no-op round trip to the owner thread (health check, latency measurement)."""
        await self._run("ping", lambda o: None)

    async def options_ping(self, uri: str, within: float = 2.0) -> int:
        """Send a SIP OPTIONS to ``uri`` from the loop (its own socket, not pjsua2); return the status code.
        Raises SipError when nothing answers ``within`` seconds."""
        return await options_ping(uri, within=within, transport=self._config.transport)

    def _set_fault_once(self) -> None:
        """Test hook: make the next pjsua2 callback raise (the guard must swallow it)."""
        if self._owner is not None:
            self._owner.fault_once = True


def _connect_sound_device(owner: PjOwner, handle: CallHandle) -> None:
    owner.media.connect_sound_device(handle)
    owner.local.refresh()  # before the command answers: the loop's next prompt must see the card taken


class _LocalWaiter:
    """The loop's side of one :meth:`SipEngine.play_local`: the owner tells it (through the bridge) how it ended."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: LocalPromptEnded | None = None

    def finish(self, result: LocalPromptEnded) -> None:  # on the loop thread
        self.result = result
        self.done.set()
