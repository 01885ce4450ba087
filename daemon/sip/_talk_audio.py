"""Talk mode on pjmedia's sound device: the ``[audio]`` settings turned into pjmedia's echo-canceller options.

Pure (no pjsua2): :func:`talk_media_settings` is what :func:`daemon.sip._pj_setup.create_endpoint` writes into
``EpConfig.medConfig``. pjsua2 applies echo cancellation on the sound-device port only (PJSUA2-FACTS.md, "Echo
cancellation"), so these act on a source build with a card; the null device accepts and ignores them.

Why these knobs (measured in docs/audio.md with benchmarks/aec_speech.py): the echo must arrive within the tail
after the canceller's reference (Speex keeps its own 2-frame reference buffer; for WebRTC and AEC3 pjmedia delays
the reference by 3/4 of the output latency, and WebRTC also takes the tail as its "delay in the sound card
buffer"). A 150 ms tail covers echo paths of 20-80 ms on the paced card and did as well as 200 ms or better. A
lower latency (40 ms) made Speex cancel 40+ dB on speech where the 140 ms default gave ~20 dB. Speex's gain
control sent the visitor ~10 dB lower, alone as in double-talk: it is off unless ``gain_control`` asks for it;
its denoiser also suppresses the residual echo, so ``noise_suppression`` stays on.

The receive side: pjmedia's jitter buffer sheds delay it no longer needs by its discard algorithm (``[audio]
jitter_discard``; settable from Python only on our build, packaging/pjsua2/swig-jb-discard-algo.patch), and the
stream's VAD (``silence_suppression``) stops sending while the microphone is quiet: both measured with
benchmarks/talk_call.py (docs/audio.md, "The jitter buffer and the call's start").
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hw.settings import AudioConfig, EchoCanceller, JitterDiscard

__all__ = ["TalkMediaSettings", "talk_media_settings"]

# pjmedia/echo.h
PJMEDIA_ECHO_SPEEX = 1
PJMEDIA_ECHO_SIMPLE = 2  # the "echo suppressor": mutes the microphone while the far end talks (half duplex)
PJMEDIA_ECHO_WEBRTC = 3
PJMEDIA_ECHO_WEBRTC_AEC3 = 4
PJMEDIA_ECHO_USE_NOISE_SUPPRESSOR = 128
PJMEDIA_ECHO_USE_GAIN_CONTROLLER = 256
_ALGORITHM: dict[EchoCanceller, int] = {
    "speex": PJMEDIA_ECHO_SPEEX,
    "webrtc": PJMEDIA_ECHO_WEBRTC,
    "aec3": PJMEDIA_ECHO_WEBRTC_AEC3,
}
# pjmedia/jbuf.h pjmedia_jb_discard_algo
PJMEDIA_JB_DISCARD_NONE = 0
PJMEDIA_JB_DISCARD_STATIC = 1
PJMEDIA_JB_DISCARD_PROGRESSIVE = 2  # pjsua's default (pjsua_media_config_default)
JB_DISCARD: dict[JitterDiscard, int] = {
    "none": PJMEDIA_JB_DISCARD_NONE,
    "static": PJMEDIA_JB_DISCARD_STATIC,
    "progressive": PJMEDIA_JB_DISCARD_PROGRESSIVE,
}
# pjmedia's own defaults (pjmedia/config.h PJMEDIA_SND_DEFAULT_PLAY_LATENCY / _REC_LATENCY on Linux)
DEFAULT_PLAY_LATENCY_MS = 140
DEFAULT_REC_LATENCY_MS = 100


@dataclass(frozen=True)
class TalkMediaSettings:
    """``EpConfig.medConfig`` fields for talk mode: ``ec_tail_ms`` 0 disables echo cancellation."""

    ec_tail_ms: int
    ec_options: int
    play_latency_ms: int
    rec_latency_ms: int
    speaker_level: float = 1.0  # the call -> the card's playback port (the conference connection's level)
    mic_level: float = 1.0  # the card's capture port -> the call
    jb_discard: int = PJMEDIA_JB_DISCARD_PROGRESSIVE  # MediaConfig.jbDiscardAlgo
    vad: bool = True  # the stream's silence suppression (MediaConfig.noVad is its negation)


def talk_media_settings(audio: AudioConfig | None) -> TalkMediaSettings:
    """The media settings for ``audio`` (None: echo cancellation off, pjsua's default latency, jitter buffer and VAD,
    as before)."""
    if audio is None:
        return _echo_settings(None)
    return replace(
        _echo_settings(audio),
        speaker_level=audio.talk_volume,
        mic_level=audio.mic_gain,
        jb_discard=JB_DISCARD[audio.jitter_discard],
        vad=audio.silence_suppression,
    )


def _echo_settings(audio: AudioConfig | None) -> TalkMediaSettings:
    if audio is None:
        return TalkMediaSettings(0, 0, DEFAULT_PLAY_LATENCY_MS, DEFAULT_REC_LATENCY_MS)
    play, rec = audio.sound_latency_ms, audio.capture_latency_ms
    if audio.half_duplex:
        return TalkMediaSettings(audio.echo_tail_ms, PJMEDIA_ECHO_SIMPLE, play, rec)
    if not audio.echo_cancellation:
        return TalkMediaSettings(0, 0, play, rec)
    # The same flags for every canceller: stock pjmedia fixes Speex's denoiser and AGC at build time (both on),
    # our config_site.h makes them read these flags (packaging/pjsua2/config_site.h).
    options = _ALGORITHM[audio.echo_canceller]
    options |= PJMEDIA_ECHO_USE_NOISE_SUPPRESSOR if audio.noise_suppression else 0
    options |= PJMEDIA_ECHO_USE_GAIN_CONTROLLER if audio.gain_control else 0
    return TalkMediaSettings(audio.echo_tail_ms, options, play, rec)
