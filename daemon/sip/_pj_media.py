"""The SIP owner's media commands: prompts played into a call, recordings, the sound device and the talk
port that bridges call audio to Python. A mixin of :class:`~daemon.sip._pj_owner.PjOwner`, split out to
keep each module readable; everything here runs on the owner thread like the rest of PjOwner."""

from __future__ import annotations

import logging
import time
from typing import Any, cast

import pjsua2 as pj

from daemon.errors import SipError
from daemon.sip._pj_calls import CallRecord, OwnerHooks, PjPlayer, PjTalkPort
from daemon.sip.audio_bridge import AudioBridge
from daemon.sip.types import CallHandle, PlaybackFinished, SipEvent

__all__ = ["TALK_PORT_GRACE_S", "MediaCommands"]

log = logging.getLogger("daemon.sip._pj_owner")  # one logger name for the owner thread's messages

# A disconnected talk port rests this long before it may serve another call: a few 20 ms clock ticks.
TALK_PORT_GRACE_S = 0.1


class MediaCommands:
    """Media commands and their upkeep; the state they use belongs to PjOwner."""

    _ep: Any
    _records: dict[int, CallRecord]
    _ended_players: list[tuple[int, PjPlayer]]
    _retired_talk: list[tuple[float, PjTalkPort]]  # (reusable after, port): see _retire_talk_port
    _idle_talk: list[PjTalkPort]  # disconnected ports waiting for the next talk call
    has_sound_device: bool

    def _record(self, handle: CallHandle) -> CallRecord:
        raise NotImplementedError

    def _emit(self, event: SipEvent) -> None:
        raise NotImplementedError

    def _check_players(self) -> None:
        """Report prompts that reached their end (flagged by PjPlayer.onEof2 from the clock thread)."""
        for rec in list(self._records.values()):
            player = rec.player
            if player is not None and player.reached_end and not player.loop:
                self._ended_players.append((rec.handle.generation, player))  # dropped next turn
                rec.player = None
                self._emit(PlaybackFinished(rec.handle))

    def _connect_media(self, rec: CallRecord) -> None:
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
            adm = self._ep.audDevManager()
            adm.getCaptureDevMedia().startTransmit(media)
            media.startTransmit(adm.getPlaybackDevMedia())

    def play(self, handle: CallHandle, wav_path: str, loop: bool) -> None:
        rec = self._record(handle)
        media = rec.call.getAudioMedia(-1)  # raises (-> SipError) when the call has no audio yet
        player = PjPlayer(cast("OwnerHooks", self), handle.generation)  # PjOwner: the hooks' owner
        player.loop = loop
        player.createPlayer(wav_path, 0 if loop else pj.PJMEDIA_FILE_NO_LOOP)
        player.startTransmit(media)
        rec.player = player  # replaces (and so stops) any earlier prompt

    def stop_playback(self, handle: CallHandle) -> bool:
        rec = self._record(handle)
        was, rec.player = rec.player is not None, None
        return was

    def record(self, handle: CallHandle, wav_path: str) -> None:
        rec = self._record(handle)
        media = rec.call.getAudioMedia(-1)
        recorder = pj.AudioMediaRecorder()
        recorder.createRecorder(wav_path)
        media.startTransmit(recorder)
        rec.recorder = recorder

    def stop_recording(self, handle: CallHandle) -> bool:
        rec = self._record(handle)
        was, rec.recorder = rec.recorder is not None, None  # the destructor closes the WAV file
        return was

    def connect_sound_device(self, handle: CallHandle) -> None:
        if not self.has_sound_device:
            raise SipError("this pjsua2 build has no sound device")
        rec = self._record(handle)
        rec.sound_device = True
        self._connect_when_media(rec)

    def connect_audio_bridge(self, handle: CallHandle) -> AudioBridge:
        """Join the call both ways to a :class:`PjTalkPort` (once per call) and return its bridge."""
        rec = self._record(handle)
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
            self._connect_media(rec)

    def _talk_port(self) -> PjTalkPort:
        """An idle talk port with a fresh bridge, else a new port. Ports are reused and destroyed only at
        shutdown: destroying one races pjmedia's clock thread (a segfault once in ~1,500 drops; once more
        in a 1,000-visit run even with the grace period)."""
        if self._idle_talk:
            port = self._idle_talk.pop()
            port.bridge = AudioBridge()
            return port
        return PjTalkPort(AudioBridge())

    def _retire_talk_port(self, rec: CallRecord) -> None:
        """Close the bridge, disconnect the port, and reuse it only after the clock thread has seen the
        disconnect (conference changes take effect on its next tick)."""
        port, rec.talk_port = rec.talk_port, None
        if port is None:
            return
        port.disconnect(rec.call)
        log.info("sip %s: talk audio closed: %s", rec.handle, port.bridge.summary())
        self._retired_talk.append((time.monotonic() + TALK_PORT_GRACE_S, port))

    def _retire_all_talk_ports(self) -> None:
        for rec in self._records.values():
            self._retire_talk_port(rec)

    def _rest_retired_talk(self, now: float) -> None:
        if self._retired_talk and self._retired_talk[0][0] <= now:
            self._idle_talk += [port for t, port in self._retired_talk if t <= now]
            self._retired_talk = [(t, port) for t, port in self._retired_talk if t > now]
