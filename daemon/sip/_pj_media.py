"""The SIP owner's media commands: prompts played into a call, recordings, and the sound device that carries
a talk call's audio (the one talk path: docs/audio.md, "Decision"). A part of
:class:`~daemon.sip._pj_owner.PjOwner`; everything here runs on the owner thread like the rest of PjOwner."""

from __future__ import annotations

import logging
from typing import Any

import pjsua2 as pj

from daemon.errors import SipError
from daemon.sip._pj_calls import CallBook, CallRecord, OwnerHooks, PjPlayer
from daemon.sip._talk_audio import talk_media_settings
from daemon.sip.types import CallHandle, PlaybackFinished

__all__ = ["CLOCK_IDLE_GRACE_S", "MediaCommands"]

log = logging.getLogger("daemon.sip._pj_owner")  # one logger name for the owner thread's messages

# The conference clock keeps running this long after the last call ended before the sound device (or the null
# device) is closed: the conference applies port removals (a prompt's player, a call's stream) on its next
# tick, and a removal applied after a stopped clock restarts would read a port freed long before.
CLOCK_IDLE_GRACE_S = 0.2


class MediaCommands:
    """Media commands and their upkeep: prompts, recordings and the sound device."""

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

    def upkeep(self, now: float) -> None:
        """Once per turn of the owner: drop ended players, report prompts that ended."""
        self._ended_players.clear()  # dropped here, outside their own onEof2 callback
        self._check_players()

    def keep_clock(self, now: float, calls: bool) -> None:
        """Run pjmedia's conference clock (the sound device, or the null device's master port: threads ``clock``
        and the card's own) only while a call exists, so an idle panel has no 50 Hz thread.

        Started when the first call record appears (dial or incoming), before any prompt or the card can be
        connected to it; stopped :data:`CLOCK_IDLE_GRACE_S` after the last one ended, once its players are
        dropped, so every queued port removal has been applied by a tick. Started and
        stopped only here, on the owner thread; pjsua itself never opens the device while ``setNoDev`` is in
        force (``no_snd``), and ``sndAutoCloseTime = -1`` keeps it from closing it behind our back."""
        if calls:
            self._quiet_since = None
            if not self.clock_running:
                self._start_clock()
            return
        if not self.clock_running or self._ended_players:
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
        """When upkeep next has work while no call exists (the clock's idle grace)."""
        if self.clock_running and self._quiet_since is not None:
            return self._quiet_since + CLOCK_IDLE_GRACE_S
        return None

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
        if rec.sound_device:
            adm = self.ep.audDevManager()
            adm.getCaptureDevMedia().startTransmit2(media, _at_level(self.talk_settings.mic_level))
            media.startTransmit2(adm.getPlaybackDevMedia(), _at_level(self.talk_settings.speaker_level))

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

    def _connect_when_media(self, rec: CallRecord) -> None:
        """Connect now if the call's audio is up, else on_media_state does when it comes up: an inbound call
        is bridged as soon as it is answered, and an answer can be reported before its media."""
        if rec.media_active:
            self.connect_media(rec)

    def release_all(self, ep: Any) -> None:
        """Shutdown: close the sound device (or the null device's clock) first, then drop the ended players.

        A player is a Python subclass whose ``onEof2`` runs on pjmedia's clock thread; with no device there is
        no clock thread, so nothing reaches Python while the owner tears pjsua2's objects down. Destroying
        Python-backed ports while the clock ran segfaulted here before (the Python talk port, gone since)."""
        if self.clock_running:
            try:
                ep.audDevManager().setNoDev()
            except pj.Error as exc:
                log.warning("sip: closing the sound device before shutdown: %s", exc.info())
            else:
                self.clock_running = False
        self._ended_players.clear()


def _at_level(level: float) -> Any:
    """A conference connection's level (1.0: unchanged): ``[audio] talk_volume`` and ``mic_gain``."""
    param = pj.AudioMediaTransmitParam()
    param.level = level
    return param
