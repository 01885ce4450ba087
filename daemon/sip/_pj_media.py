"""The SIP owner's media commands: prompts played into a call, recordings, the sound device and the talk
port that bridges call audio to Python. A part of :class:`~daemon.sip._pj_owner.PjOwner`; everything here
runs on the owner thread like the rest of PjOwner."""

from __future__ import annotations

import logging
import time
from typing import Any

import pjsua2 as pj

from daemon.errors import SipError
from daemon.sip._pj_calls import CallBook, CallRecord, OwnerHooks, PjPlayer, PjTalkPort
from daemon.sip._talk_audio import talk_media_settings
from daemon.sip.audio_bridge import AudioBridge
from daemon.sip.types import CallHandle, PlaybackFinished

__all__ = ["CLOCK_IDLE_GRACE_S", "TALK_PORT_GRACE_S", "MediaCommands"]

log = logging.getLogger("daemon.sip._pj_owner")  # one logger name for the owner thread's messages

# A disconnected talk port rests this long before it may serve another call: a few 20 ms clock ticks.
TALK_PORT_GRACE_S = 0.1
# The conference clock keeps running this long after the last call ended before the sound device (or the null
# device) is closed: the conference applies port removals (a prompt's player, a call's stream) on its next
# tick, and a removal applied after a stopped clock restarts would read a port freed long before.
CLOCK_IDLE_GRACE_S = 0.2


class MediaCommands:
    """Media commands and their upkeep: prompts, recordings, the sound device and talk ports."""

    def __init__(self, book: CallBook, hooks: OwnerHooks) -> None:
        self._book = book
        self._hooks = hooks
        self.ep: Any = None  # the Endpoint, set once it is started (pj.Endpoint)
        self.has_sound_device = False
        # The sound card pjmedia drives (its index in enumDev2), or None for the null device: opened while a call
        # exists, closed when the panel is idle (see keep_clock).
        self.sound_device_index: int | None = None
        self.clock_running = False
        self.clock_starts = 0  # how often the clock was started (one per busy period; tests and status)
        self._quiet_since: float | None = None  # when the last call ended, while the clock still runs
        self.talk_settings = talk_media_settings(None)  # set by the engine before the owner starts
        self._ended_players: list[tuple[int, PjPlayer]] = []
        self._retired_talk: list[tuple[float, PjTalkPort]] = []  # (reusable after, port): retire_talk_port
        self._idle_talk: list[PjTalkPort] = []  # disconnected ports waiting for the next talk call

    def upkeep(self, now: float) -> None:
        """Once per turn of the owner: drop ended players, rest talk ports, report prompts that ended."""
        self._ended_players.clear()  # dropped here, outside their own onEof2 callback
        self._rest_retired_talk(now)
        self._check_players()

    def keep_clock(self, now: float, calls: bool) -> None:
        """Run pjmedia's conference clock (the sound device, or the null device's master port: threads ``clock``
        and the card's own) only while a call exists, so an idle panel has no 50 Hz thread.

        Started when the first call record appears (dial or incoming), before any prompt or talk port can be
        connected to it; stopped :data:`CLOCK_IDLE_GRACE_S` after the last one ended, once its players are
        dropped and its talk ports rested, so every queued port removal has been applied by a tick. Started and
        stopped only here, on the owner thread; pjsua itself never opens the device while ``setNoDev`` is in
        force (``no_snd``), and ``sndAutoCloseTime = -1`` keeps it from closing it behind our back."""
        if calls:
            self._quiet_since = None
            if not self.clock_running:
                self._start_clock()
            return
        if not self.clock_running or self._retired_talk or self._ended_players:
            return
        if self._quiet_since is None:
            self._quiet_since = now
        elif now - self._quiet_since >= CLOCK_IDLE_GRACE_S:
            self.stop_clock()

    def _start_clock(self) -> None:
        adm = self.ep.audDevManager()
        if self.sound_device_index is not None:
            try:
                # Recorded without opening (pjsua2 adds NO_IMMEDIATE_OPEN), then opened now by mode 0: open
                # while the call is set up, not at the first connection (a prompt, talk) of the call.
                adm.setNoDev()  # clears pjsua's "sound on" flag, which a connection made meanwhile may have set
                adm.setCaptureDev(self.sound_device_index)
                adm.setPlaybackDev(self.sound_device_index)
                adm.setSndDevMode(0)
            except pj.Error as exc:
                # The call still needs a clock: without one no RTP and no DTMF leave, and the door code is DTMF.
                log.error("sip: cannot open the sound card for this call (%s); the call has no audio", exc.info())
            else:
                self.clock_running = True
                self.clock_starts += 1
                return
        try:
            adm.setNullDev()  # opens now: a master port whose thread clocks the conference
        except pj.Error as exc:  # the next call tries again
            log.error("sip: cannot start the conference clock for this call: %s", exc.info())
            return
        self.clock_running = True
        self.clock_starts += 1

    def stop_clock(self) -> None:
        """Close the sound device (or the null device) and so stop the conference clock; nothing is clocked
        until the next call starts it again."""
        self._quiet_since = None
        if not self.clock_running:
            return
        try:
            self.ep.audDevManager().setNoDev()
        except pj.Error as exc:
            log.warning("sip: closing the sound device: %s", exc.info())
            return
        self.clock_running = False

    def next_due(self) -> float | None:
        """When upkeep next has work while no call exists (a talk port's rest, the clock's idle grace)."""
        times = [t for t, _ in self._retired_talk]
        if self.clock_running and self._quiet_since is not None:
            times.append(self._quiet_since + CLOCK_IDLE_GRACE_S)
        return min(times, default=None)

    def _check_players(self) -> None:
        """Report prompts that reached their end (flagged by PjPlayer.onEof2 from the clock thread)."""
        for rec in list(self._book.records.values()):
            player = rec.player
            if player is not None and player.reached_end and not player.loop:
                self._ended_players.append((rec.handle.generation, player))  # dropped next turn
                rec.player = None
                self._book.emit(PlaybackFinished(rec.handle))

    def connect_media(self, rec: CallRecord) -> None:
        """(Re)join the call's conference port to its prompt, recorder and sound device. A media update
        (re-INVITE) can replace the port and drop the old connections, so this runs on every media change."""
        media = rec.call.getAudioMedia(-1)
        if rec.player is not None:
            rec.player.startTransmit(media)
        if rec.recorder is not None:
            media.startTransmit(rec.recorder)
        if rec.talk_port is not None:
            rec.talk_port.startTransmit(media)
            media.startTransmit(rec.talk_port)
        if rec.sound_device:
            adm = self.ep.audDevManager()
            adm.getCaptureDevMedia().startTransmit(media)
            media.startTransmit(adm.getPlaybackDevMedia())

    def play(self, handle: CallHandle, wav_path: str, loop: bool) -> None:
        rec = self._book.get(handle)
        media = rec.call.getAudioMedia(-1)  # raises (-> SipError) when the call has no audio yet
        player = PjPlayer(self._hooks, handle.generation)
        player.loop = loop
        player.createPlayer(wav_path, 0 if loop else pj.PJMEDIA_FILE_NO_LOOP)
        player.startTransmit(media)
        rec.player = player  # replaces (and so stops) any earlier prompt

    def record(self, handle: CallHandle, wav_path: str) -> None:
        rec = self._book.get(handle)
        media = rec.call.getAudioMedia(-1)
        recorder = pj.AudioMediaRecorder()
        recorder.createRecorder(wav_path)
        media.startTransmit(recorder)
        rec.recorder = recorder

    def stop_recording(self, handle: CallHandle) -> bool:
        rec = self._book.get(handle)
        was, rec.recorder = rec.recorder is not None, None  # the destructor closes the WAV file
        return was

    def connect_sound_device(self, handle: CallHandle) -> None:
        if not self.has_sound_device:
            raise SipError("this pjsua2 build has no sound device")
        rec = self._book.get(handle)
        rec.sound_device = True
        self._connect_when_media(rec)

    def connect_audio_bridge(self, handle: CallHandle) -> AudioBridge:
        """Join the call both ways to a :class:`PjTalkPort` (once per call) and return its bridge."""
        rec = self._book.get(handle)
        if rec.talk_port is None:
            rec.talk_port = self._talk_port()
        self._connect_when_media(rec)
        log.info(
            "sip %s: talk audio bridged through Python%s",
            rec.handle,
            "" if rec.media_active else " once its media is up",
        )
        return rec.talk_port.bridge

    def _connect_when_media(self, rec: CallRecord) -> None:
        """Connect now if the call's audio is up, else on_media_state does when it comes up: an inbound call
        is bridged as soon as it is answered, and an answer can be reported before its media."""
        if rec.media_active:
            self.connect_media(rec)

    def _talk_port(self) -> PjTalkPort:
        """An idle talk port with a fresh bridge, else a new port. Ports are reused and destroyed only at
        shutdown: destroying one races pjmedia's clock thread (a segfault once in ~1,500 drops; once more
        in a 1,000-visit run even with the grace period)."""
        if self._idle_talk:
            port = self._idle_talk.pop()
            port.bridge = AudioBridge()
            return port
        return PjTalkPort(AudioBridge())

    def retire_talk_port(self, rec: CallRecord) -> None:
        """Close the bridge, disconnect the port, and reuse it only after the clock thread has seen the
        disconnect (conference changes take effect on its next tick)."""
        port, rec.talk_port = rec.talk_port, None
        if port is None:
            return
        port.disconnect(rec.call)
        log.info("sip %s: talk audio closed: %s", rec.handle, port.bridge.summary())
        self._retired_talk.append((time.monotonic() + TALK_PORT_GRACE_S, port))

    def release_all(self, ep: Any) -> None:
        """Shutdown: retire every talk port, let pjmedia's clock see the disconnects, then drop every
        player and port (all must be gone before libDestroy). ``ep`` is polled meanwhile."""
        self._retire_all_talk_ports()  # a helper: a loop variable here would keep a record alive
        deadline = time.monotonic() + 2 * TALK_PORT_GRACE_S
        while self._retired_talk and time.monotonic() < deadline:
            ep.libHandleEvents(10)
        self._stop_conference_clock(ep)
        self._retired_talk.clear()
        self._idle_talk.clear()
        self._ended_players.clear()

    def _stop_conference_clock(self, ep: Any) -> None:
        """Close the sound device (or the null device's clock) before any talk port is destroyed.

        With no device there is no clock thread, so no frame reaches Python while the owner tears pjsua2's
        objects down. pjsua2 2.15.1's source guards an ``AudioMediaPort`` with a group lock (its destructor
        detaches the callbacks under it), yet destroying ports while the clock ran segfaulted here before
        (once in ~1,500 drops, hence the reuse), and one CI run on the wheel segfaulted inside
        ``onFrameReceived`` in a talk scenario, cause not pinned down: at shutdown, take no chance."""
        if not self._idle_talk and not self._retired_talk:
            return
        try:
            ep.audDevManager().setNoDev()
        except pj.Error as exc:
            log.warning("sip: closing the sound device before shutdown: %s", exc.info())
            return
        self.clock_running = False

    def _retire_all_talk_ports(self) -> None:
        for rec in self._book.records.values():
            self.retire_talk_port(rec)

    def _rest_retired_talk(self, now: float) -> None:
        if self._retired_talk and self._retired_talk[0][0] <= now:
            self._idle_talk += [port for t, port in self._retired_talk if t <= now]
            self._retired_talk = [(t, port) for t, port in self._retired_talk if t > now]
