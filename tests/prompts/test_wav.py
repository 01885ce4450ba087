"""WAV parsing and the pure-Python resampler: frequency, length and anti-aliasing."""

from __future__ import annotations

import itertools
import math
import struct
from array import array

import pytest

from daemon.prompts import Pcm, WavFormatError, encode_wav, parse_wav, peak, resample, to_mono16


def sine(freq: float, rate: int, seconds: float = 1.0, amplitude: int = 16000) -> Pcm:
    n = int(rate * seconds)
    samples = array("h", (round(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(n)))
    return Pcm(samples.tobytes(), rate)


def crossings(pcm: Pcm) -> int:
    s = array("h")
    s.frombytes(pcm.data)
    return sum(1 for a, b in itertools.pairwise(s) if a < 0 <= b)


def test_sine_keeps_its_frequency_and_length_ratio() -> None:
    src = sine(1000, 22050)
    out = resample(src, 8000)
    assert out.rate == 8000
    assert out.frames == 22050 * 8000 // 22050
    assert abs(out.duration - src.duration) < 0.001
    # 1000 Hz over one second: 1000 upward zero crossings (a few lost at the edges to the filter's settling)
    assert 995 <= crossings(out) <= 1001
    # the low-pass passes 1 kHz: the level is kept
    assert 14000 <= peak(out) <= 17500


def test_upsampling_keeps_frequency() -> None:
    out = resample(sine(440, 8000), 16000)
    assert out.frames == 16000
    assert 438 <= crossings(out) <= 441


def test_downsampling_suppresses_content_above_new_nyquist() -> None:
    # 6 kHz would alias to 2 kHz at 8 kHz: the anti-aliasing low-pass must take most of it out
    out = resample(sine(6000, 22050), 8000)
    tail = Pcm(out.data[len(out.data) // 2 :], 8000)  # after the filter settles
    assert peak(tail) < 16000 * 0.1


def test_wav_round_trip_and_strict_length() -> None:
    pcm = sine(500, 16000, 0.1)
    blob = encode_wav(pcm)
    assert parse_wav(blob) == pcm
    with pytest.raises(WavFormatError, match="does not match"):
        parse_wav(blob[:-10])
    with pytest.raises(WavFormatError, match="RIFF"):
        parse_wav(b"not a wav at all")


def test_streamed_wav_with_placeholder_sizes_is_accepted_leniently() -> None:
    pcm = sine(500, 22050, 0.1)
    blob = bytearray(encode_wav(pcm))
    struct.pack_into("<I", blob, 4, 0x7FFFF024)
    struct.pack_into("<I", blob, 40, 0x7FFFF000)  # what espeak-ng --stdout writes
    with pytest.raises(WavFormatError):
        parse_wav(bytes(blob))
    assert parse_wav(bytes(blob), strict=False) == pcm


def test_stereo_24_bit_to_mono_16() -> None:
    # left = right = 0x123456 (24-bit) -> 0x1234 in 16 bits
    frame = b"\x56\x34\x12" * 2
    out = to_mono16(Pcm(frame * 4, 44100, channels=2, sample_width=3))
    assert out.channels == 1 and out.sample_width == 2 and out.frames == 4
    assert out.data == struct.pack("<h", 0x1234) * 4
