"""Who plays the panel's speaker: the ONE place that decides between PortAudio and pjsua2's conference.

On a source build with a sound card, pjmedia opens the card for a talk call and keeps it for the call (its
echo canceller needs both directions on one device: docs/audio.md). A Pi's ``hw:`` device opens once, so while
:attr:`SipEngine.talk_holds_sound_device` a prompt for the visitor (the door opened, the call ending) is played
through pjsua2's conference into the sound device's playback port, mixed with the resident's voice
(:meth:`SipEngine.play_local`). Otherwise the speaker's PortAudio plays it (the waiting prompt, "nobody
answered", key clicks, the self-test): the card is then free. With no sound device (the null device) the
route is PortAudio only.

The card changes hands only here: :meth:`SpeakerRoute.hand_over_to_talk` waits for a PortAudio prompt to close
its stream before the call's audio is connected to the card, and a PortAudio prompt decides its route and plays
under the same lock, so the two never hold the card at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import anyio

from daemon.errors import AudioError, SipError, translate_hw_error
from hw.speaker import PcmFormat, PlayResult, Speaker

if TYPE_CHECKING:
    from daemon.sip import SipEngine

__all__ = ["HAND_OVER_TIMEOUT", "SpeakerRoute"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long a call's audio waits for a PortAudio prompt to close its stream (a stopped prompt closes within one
# buffer; a hung device never does, and the call's audio must not wait for it for ever).
HAND_OVER_TIMEOUT = 2.0
# Beyond its own length, how long a prompt in the conference may take before it is stopped (a stalled clock).
CONFERENCE_SLACK_S = 5.0


class SpeakerRoute:
    """The panel's speaker, routed. ``engine``: the SIP engine when its pjsua2 drives a sound device (None: the
    speaker's PortAudio plays everything). ``level``: the prompts' volume in the conference ([audio] volume,
    which the speaker applies to PortAudio's prompts itself)."""

    def __init__(self, speaker: Speaker, engine: SipEngine | None = None, *, level: float = 1.0) -> None:
        self._speaker = speaker
        self._engine = engine
        self._level = level
        self._portaudio = anyio.Lock()  # held by a PortAudio prompt (decision and play) and by the hand-over
        self.conference_prompts = 0  # prompts played through pjsua2's conference (talk owned the card)
        self.portaudio_prompts = 0  # prompts played through the speaker's PortAudio

    @property
    def talk_owns_card(self) -> bool:
        """pjmedia has the card for a call (or a prompt still playing in it): PortAudio must not open it."""
        return self._engine is not None and self._engine.talk_holds_sound_device

    async def play_prompt(self, pcm: bytes, fmt: PcmFormat, wav: Path) -> AudioError | None:
        """Play a prompt to the end (``pcm`` in memory for PortAudio, ``wav`` the same audio as a file for
        pjsua2's player); cancelling the caller stops it within one buffer (PortAudio) or one tick (conference)."""
        async with self._portaudio:
            if not self.talk_owns_card:
                self.portaudio_prompts += 1
                return _audio_error(await self._speaker.play(pcm, fmt))
        return await self._in_conference(pcm, fmt, wav)

    async def play_tone(self, pcm: bytes, fmt: PcmFormat) -> AudioError | None:
        """A key's click: dropped, unplayed, while anything else has the speaker (a prompt, a call's audio)."""
        if self.talk_owns_card or self._portaudio.locked() or self._speaker.turn.locked():
            return None
        async with self._portaudio:
            return _audio_error(await self._speaker.play(pcm, fmt))

    async def play_check_tone(self, pcm: bytes, fmt: PcmFormat) -> PlayResult | None:
        """The self-test's tone through PortAudio, unless a call's audio has the card: then None, unplayed (the
        visitor would hear a beep mid-call, and PortAudio would open the card a second time). Held like a prompt,
        so a call answered meanwhile gets the card once the tone's stream has closed."""
        async with self._portaudio:
            if self.talk_owns_card:
                return None
            return await self._speaker.play(pcm, fmt)

    async def hand_over_to_talk(self, connect: Callable[[], Awaitable[T]]) -> T:
        """Connect a call's audio to the card (``connect``) once no PortAudio prompt holds it: the visit stops
        the waiting prompt as the call is answered, and its stream closes within one buffer. A stream that does
        not close in :data:`HAND_OVER_TIMEOUT` (a hung device) is logged and the call connected anyway."""
        acquired = False
        with anyio.move_on_after(HAND_OVER_TIMEOUT):
            await self._portaudio.acquire()
            acquired = True
        if not acquired:
            log.error("speaker: PortAudio kept the card %g s (a hung device?); connecting the call", HAND_OVER_TIMEOUT)
        try:
            return await connect()
        finally:
            if acquired:
                self._portaudio.release()

    async def _in_conference(self, pcm: bytes, fmt: PcmFormat, wav: Path) -> AudioError | None:
        assert self._engine is not None  # talk_owns_card said so
        seconds = len(pcm) / (fmt.rate * fmt.frame_bytes)
        try:
            await self._engine.play_local(str(wav), level=self._level, limit=seconds + CONFERENCE_SLACK_S)
        except SipError as exc:
            if self.talk_owns_card:
                return AudioError(f"speaker: prompt in the call's conference failed: {exc}")
            # The call let go of the card between the decision and the player (it just ended): the card is
            # PortAudio's again.
            log.info("speaker: the call released the card as the prompt started; playing it through PortAudio")
            return await self.play_prompt(pcm, fmt, wav)
        self.conference_prompts += 1
        return None


def _audio_error(result: PlayResult) -> AudioError | None:
    if result.error is None:
        return None
    error = translate_hw_error(result.error)
    return error if isinstance(error, AudioError) else AudioError(str(error))
