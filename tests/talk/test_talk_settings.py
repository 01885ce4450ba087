"""``[audio]``'s talk-mode keys: validated with the rest of the configuration, and turned into pjmedia's options."""

from __future__ import annotations

import pytest

from daemon.config import default_config_text, parse_config
from daemon.errors import ConfigError
from daemon.sip._talk_audio import (
    PJMEDIA_ECHO_SIMPLE,
    PJMEDIA_ECHO_SPEEX,
    PJMEDIA_ECHO_USE_GAIN_CONTROLLER,
    PJMEDIA_ECHO_USE_NOISE_SUPPRESSOR,
    PJMEDIA_ECHO_WEBRTC,
    PJMEDIA_ECHO_WEBRTC_AEC3,
    PJMEDIA_JB_DISCARD_NONE,
    PJMEDIA_JB_DISCARD_PROGRESSIVE,
    PJMEDIA_JB_DISCARD_STATIC,
    TalkMediaSettings,
    talk_media_settings,
)
from hw.settings import AudioConfig, EchoCanceller, JitterDiscard


def _with_audio(line: str) -> str:
    """The default configuration with one ``[audio]`` key's line replaced by ``line``."""
    key = line.split(" =", maxsplit=1)[0]
    lines = default_config_text().splitlines()
    at = next(i for i, text in enumerate(lines) if text.startswith(f"{key} = "))
    return "\n".join([*lines[:at], line, *lines[at + 1 :]]) + "\n"


def test_the_default_config_cancels_echo_with_speex_at_low_latency() -> None:
    audio = parse_config(default_config_text(), "<default>").audio
    assert audio == AudioConfig()  # the shipped file says what the code defaults to
    # Speex with its denoiser (which also suppresses residual echo) and without its AGC (the visitor ~10 dB lower)
    # the jitter buffer sheds delay only past twice its burst level (static), and no VAD (docs/audio.md)
    assert talk_media_settings(audio) == TalkMediaSettings(
        150,
        PJMEDIA_ECHO_SPEEX | PJMEDIA_ECHO_USE_NOISE_SUPPRESSOR,
        40,
        40,
        jb_discard=PJMEDIA_JB_DISCARD_STATIC,
        vad=False,
    )


def test_the_capture_buffer_is_sized_apart_from_the_playback_buffer() -> None:
    """The playback buffer sets where the echo lands in the canceller's tail; the capture buffer only how late the
    capture thread may be: ``sound_latency_ms`` is the first, ``capture_latency_ms`` the second."""
    settings = talk_media_settings(AudioConfig(sound_latency_ms=40, capture_latency_ms=120))
    assert (settings.play_latency_ms, settings.rec_latency_ms) == (40, 120)
    half = talk_media_settings(AudioConfig(half_duplex=True, capture_latency_ms=200))
    off = talk_media_settings(AudioConfig(echo_cancellation=False, capture_latency_ms=60))
    assert (half.rec_latency_ms, off.rec_latency_ms) == (200, 60)


def test_no_audio_config_keeps_the_old_behaviour() -> None:
    assert talk_media_settings(None) == TalkMediaSettings(0, 0, 140, 100, jb_discard=PJMEDIA_JB_DISCARD_PROGRESSIVE)
    assert talk_media_settings(None).vad


def test_echo_cancellation_off_sets_no_tail() -> None:
    assert talk_media_settings(AudioConfig(echo_cancellation=False)).ec_tail_ms == 0


def test_half_duplex_wins_over_the_canceller_choice() -> None:
    settings = talk_media_settings(AudioConfig(echo_canceller="webrtc", half_duplex=True, echo_tail_ms=120))
    assert (settings.ec_tail_ms, settings.ec_options) == (120, PJMEDIA_ECHO_SIMPLE)


@pytest.mark.parametrize("canceller", ["speex", "webrtc", "aec3"])
@pytest.mark.parametrize(("noise", "gain"), [(True, True), (True, False), (False, True), (False, False)])
def test_noise_and_gain_settings_reach_every_canceller(canceller: EchoCanceller, noise: bool, gain: bool) -> None:
    """Speex too: our config_site.h makes its preprocessor read these flags (stock pjmedia fixes both on)."""
    options = talk_media_settings(
        AudioConfig(echo_canceller=canceller, noise_suppression=noise, gain_control=gain)
    ).ec_options
    assert bool(options & PJMEDIA_ECHO_USE_NOISE_SUPPRESSOR) == noise
    assert bool(options & PJMEDIA_ECHO_USE_GAIN_CONTROLLER) == gain
    algorithms = {"speex": PJMEDIA_ECHO_SPEEX, "webrtc": PJMEDIA_ECHO_WEBRTC, "aec3": PJMEDIA_ECHO_WEBRTC_AEC3}
    assert options & 0xF == algorithms[canceller]  # PJMEDIA_ECHO_ALGO_MASK


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("echo_tail_ms = 5000", "audio.echo_tail_ms"),
        ("sound_latency_ms = 0", "audio.sound_latency_ms"),
        ("capture_latency_ms = 1000", "audio.capture_latency_ms"),
        ('echo_canceller = "nlms"', "audio.echo_canceller"),
        ('echo_cancellation = "yes"', "audio.echo_cancellation"),
        ("talk_volume = 9", "audio.talk_volume"),
        ("mic_gain = -1", "audio.mic_gain"),
        ('jitter_discard = "adaptive"', "audio.jitter_discard"),
        ('silence_suppression = "no"', "audio.silence_suppression"),
    ],
)
def test_bad_talk_keys_are_refused_naming_the_key(line: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        parse_config(_with_audio(line), "<test>")


def test_talk_levels_reach_the_media_settings_whatever_the_canceller() -> None:
    for audio in (
        AudioConfig(talk_volume=0.5, mic_gain=2.0),
        AudioConfig(talk_volume=0.5, mic_gain=2.0, half_duplex=True),
    ):
        settings = talk_media_settings(audio)
        assert (settings.speaker_level, settings.mic_level) == (0.5, 2.0)
    assert talk_media_settings(None).speaker_level == 1.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("none", PJMEDIA_JB_DISCARD_NONE),
        ("static", PJMEDIA_JB_DISCARD_STATIC),
        ("progressive", PJMEDIA_JB_DISCARD_PROGRESSIVE),
    ],
)
def test_the_jitter_discard_and_vad_keys_reach_the_media_settings(name: JitterDiscard, value: int) -> None:
    for audio in (AudioConfig(jitter_discard=name), AudioConfig(jitter_discard=name, half_duplex=True)):
        assert talk_media_settings(audio).jb_discard == value
    assert talk_media_settings(AudioConfig(silence_suppression=True)).vad
    assert not talk_media_settings(AudioConfig(echo_cancellation=False)).vad
