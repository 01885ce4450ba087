"""The SIP owner's local prompts: a WAV played on the panel's own speaker through pjsua2's conference, into the
sound device's playback port (conference port 0), while a call's audio holds the sound device.

Why (docs/audio.md, "Prompts during a call"): on a source build pjmedia owns the card for the whole call, and
a Pi's ``hw:`` device opens once, so PortAudio cannot play "porta aberta" or the call-ending warning then. The
conference mixes the prompt with the resident's voice; the call's audio keeps flowing, and the card is opened
once. A part of :class:`~daemon.sip._pj_owner.PjOwner`: everything here runs on the owner thread, except the
player's end-of-file flag (set on pjmedia's clock thread, polled here).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pjsua2 as pj

from daemon.bridge import LoopBridge
from daemon.errors import SipError
from daemon.sip._pj_calls import CallBook, OwnerHooks, PjPlayer
from daemon.sip.types import LocalPromptEnd, LocalPromptEnded

__all__ = ["LOCAL_PLAYER_GRACE_S", "LocalPrompts"]

log = logging.getLogger("daemon.sip._pj_owner")  # one logger name for the owner thread's messages

# A player disconnected from the card rests this long before it is dropped: the conference applies a
# disconnect on its next clock tick, and a port freed before that could still be called (see _pj_media).
LOCAL_PLAYER_GRACE_S = 0.1

LocalFinish = Callable[[LocalPromptEnded], None]  # runs on the loop (through the bridge); must not block


@dataclass(eq=False)
class _Playing:
    player: PjPlayer
    finish: LocalFinish
    started: float


class LocalPrompts:
    """Prompts on the sound device's playback port. Refused unless the card is pjmedia's (:meth:`refresh`):
    otherwise it belongs to PortAudio (the speaker), and a player on port 0 would open it here too."""

    def __init__(self, book: CallBook, hooks: OwnerHooks, bridge: LoopBridge) -> None:
        self._book = book
        self._hooks = hooks
        self._bridge = bridge
        self.ep: Any = None  # the Endpoint, set once it is started (pj.Endpoint)
        self.has_sound_device = False
        self._ids = itertools.count(1)
        self._playing: dict[int, _Playing] = {}
        self._retired: list[tuple[float, PjPlayer]] = []  # (drop after, player)
        # Read by the loop (SipEngine.talk_holds_sound_device): a bool replaced whole on this thread.
        self.card_held = False

    @property
    def playing(self) -> bool:
        """A prompt of ours plays on the card: whoever closes the card when idle must wait for it."""
        return bool(self._playing)

    def refresh(self) -> None:
        """Recompute :attr:`card_held`: a call's audio is bridged to the sound device (its media may still be on
        its way), a prompt of ours still plays there (it outlives the call it started in: "porta aberta" is heard
        whole after the hang-up), or pjmedia simply has the card open (it closes it some time after a call, or
        never with ``sndAutoCloseTime = -1``). The last is the ground truth PortAudio needs; the first two cover
        the moments before pjmedia opens it and keep it open."""
        self.card_held = self._call_on_card() or bool(self._playing) or self._card_open()

    def _call_on_card(self) -> bool:
        return any(rec.sound_device for rec in self._book.records.values())

    def _card_open(self) -> bool:
        if self.ep is None or not self.has_sound_device:
            return False  # the null device is not a card: PortAudio's prompts never meet it
        try:
            return bool(self.ep.audDevManager().sndIsActive())
        except pj.Error:
            return False

    def play(self, wav_path: str, level: float, finish: LocalFinish) -> int:
        """Start ``wav_path`` (16-bit PCM, any rate: the conference resamples) on the card at ``level``
        (1.0: unchanged); ``finish`` is told how it ended. Returns the id :meth:`stop` takes."""
        if not self.has_sound_device:
            raise SipError("play_local: this pjsua2 build has no sound device")
        self.refresh()
        if not self.card_held:
            raise SipError("play_local: the sound card is not pjmedia's (no call on it): PortAudio plays the prompts")
        player = PjPlayer(self._hooks, 0)
        player.createPlayer(wav_path, pj.PJMEDIA_FILE_NO_LOOP)
        param = pj.AudioMediaTransmitParam()
        param.level = level
        player.startTransmit2(self._card(), param)
        playback = next(self._ids)
        self._playing[playback] = _Playing(player, finish, time.monotonic())
        self.refresh()
        log.debug("sip: local prompt #%d on the sound device: %s", playback, wav_path)
        return playback

    def stop(self, playback: int) -> bool:
        """Stop a prompt still playing (its ``finish`` is told STOPPED); False when it had already ended."""
        playing = self._playing.pop(playback, None)
        if playing is None:
            return False
        self._end(playing, LocalPromptEnd.STOPPED, time.monotonic())
        self.refresh()
        return True

    def upkeep(self, now: float) -> None:
        """Once per turn of the owner: report prompts that reached their end, drop rested players."""
        for playback, playing in list(self._playing.items()):
            if playing.player.reached_end:
                del self._playing[playback]
                self._end(playing, LocalPromptEnd.FINISHED, now)
        if self._retired and self._retired[0][0] <= now:
            self._retired = [(t, player) for t, player in self._retired if t > now]
        self.refresh()

    def release_all(self, ep: Any) -> None:
        """Shutdown: stop every prompt, let the clock see the disconnects (``ep`` is polled), drop the players."""
        now = time.monotonic()
        for playback in list(self._playing):
            self._end(self._playing.pop(playback), LocalPromptEnd.STOPPED, now)
        deadline = now + 2 * LOCAL_PLAYER_GRACE_S
        while self._retired and time.monotonic() < deadline:
            ep.libHandleEvents(10)
            self._retired = [(t, player) for t, player in self._retired if t > time.monotonic()]
        self._retired.clear()
        self.card_held = False

    def _card(self) -> Any:
        return self.ep.audDevManager().getPlaybackDevMedia()

    def _end(self, playing: _Playing, end: LocalPromptEnd, now: float) -> None:
        with contextlib.suppress(pj.Error):
            playing.player.stopTransmit(self._card())
        self._retired.append((now + LOCAL_PLAYER_GRACE_S, playing.player))
        seconds = now - playing.started
        log.debug("sip: local prompt %s after %.2f s", end.value, seconds)
        self.refresh()  # before the caller hears of the end: its next prompt may go to PortAudio
        self._bridge.call(playing.finish, LocalPromptEnded(end, seconds))
