"""WAV parsing, validation and writing, and a pure-Python resampler, for 16-bit mono prompts.

Our own RIFF reader rather than :mod:`wave`: Python 3.11's ``wave`` refuses WAVE_FORMAT_EXTENSIBLE (what
sox and many editors write for recorded prompts), and it does not check that the data chunk is complete,
which is exactly what detecting a truncated cache entry needs.

Why a pure-Python resampler and not sox: it runs once per prompt and rate at start-up or reload (the
result is cached on disk), in a worker thread, so its speed hardly matters; it needs no external binary,
so the daemon, CI and developer machines behave the same; and it is easy to test exactly. Linear
interpolation alone would fold the 4-11 kHz content of a 22 kHz synth into the telephone band, so when
downsampling the signal first goes through a 4th-order Butterworth low-pass (two biquads) at 90 % of the
new Nyquist frequency: about 24 dB per octave, adequate for speech prompts played into an 8 kHz call.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from dataclasses import dataclass

__all__ = ["Pcm", "WavFormatError", "encode_wav", "parse_wav", "peak", "resample", "to_mono16"]

_PCM, _EXTENSIBLE = 0x0001, 0xFFFE
_MAX_CHUNK = 0x7FFF_F000  # what espeak-ng --stdout writes as size when it cannot seek back


class WavFormatError(ValueError):
    """Not a WAV we can use (wrong container, codec, or truncated)."""


@dataclass(frozen=True)
class Pcm:
    """Raw little-endian signed PCM plus its parameters."""

    data: bytes
    rate: int
    channels: int = 1
    sample_width: int = 2

    @property
    def frames(self) -> int:
        return len(self.data) // (self.channels * self.sample_width)

    @property
    def duration(self) -> float:
        return self.frames / self.rate if self.rate else 0.0


def parse_wav(blob: bytes, *, strict: bool = True) -> Pcm:
    """Parse a RIFF/WAVE PCM file.

    ``strict``: the RIFF and data sizes must match the bytes present (our cache entries). Not strict: a
    streamed WAV whose sizes are placeholders (espeak-ng ``--stdout``) is accepted, data to the end.
    """
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise WavFormatError("not a RIFF/WAVE file")
    riff_size = struct.unpack_from("<I", blob, 4)[0]
    if strict and riff_size + 8 != len(blob):
        raise WavFormatError(f"RIFF size {riff_size + 8} does not match file length {len(blob)}")
    pos, fmt = 12, None
    while pos + 8 <= len(blob):
        chunk_id, size = blob[pos : pos + 4], struct.unpack_from("<I", blob, pos + 4)[0]
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + size > len(blob):
                raise WavFormatError("fmt chunk truncated")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", blob, body)
            if tag == _EXTENSIBLE and size >= 26:
                tag = struct.unpack_from("<H", blob, body + 24)[0]  # first two bytes of the sub-format GUID
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise WavFormatError("data chunk before fmt chunk")
            end = body + size
            if end > len(blob):
                if strict or size < _MAX_CHUNK:
                    raise WavFormatError(f"data chunk truncated: {len(blob) - body} of {size} bytes")
                end = len(blob)
            tag, channels, rate, bits = fmt
            if tag != _PCM:
                raise WavFormatError(f"codec 0x{tag:04x} is not integer PCM")
            if channels < 1 or rate < 1000 or bits not in (8, 16, 24, 32):
                raise WavFormatError(f"unsupported format: {channels} channel(s), {rate} Hz, {bits} bit")
            width = bits // 8
            usable = (end - body) // (width * channels) * (width * channels)
            return Pcm(blob[body : body + usable], rate, channels, width)
        pos = body + size + (size & 1)  # chunks are word-aligned
    raise WavFormatError("no data chunk")


def encode_wav(pcm: Pcm) -> bytes:
    """A canonical 44-byte-header PCM WAV."""
    block = pcm.channels * pcm.sample_width
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(pcm.data),
        b"WAVE",
        b"fmt ",
        16,
        _PCM,
        pcm.channels,
        pcm.rate,
        pcm.rate * block,
        block,
        pcm.sample_width * 8,
        b"data",
        len(pcm.data),
    )
    return header + pcm.data


def _samples(data: bytes) -> array[int]:
    out = array("h")
    out.frombytes(data)
    if sys.byteorder == "big":
        out.byteswap()
    return out


def _to_bytes(samples: array[int]) -> bytes:
    if sys.byteorder == "big":
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


def to_mono16(pcm: Pcm) -> Pcm:
    """Convert any integer PCM to 16-bit mono (keep the top 16 bits; average the channels)."""
    data, width = pcm.data, pcm.sample_width
    if width == 1:  # 8-bit WAV is unsigned
        data = bytes(b ^ 0x80 for b in data)
        wide = bytearray(len(data) * 2)
        wide[1::2] = data
        data = bytes(wide)
    elif width > 2:  # little endian: the two most significant bytes are the last two of each sample
        narrow = bytearray(len(data) // width * 2)
        narrow[0::2] = data[width - 2 :: width]
        narrow[1::2] = data[width - 1 :: width]
        data = bytes(narrow)
    if pcm.channels > 1:
        s, n = _samples(data), pcm.channels
        data = _to_bytes(array("h", (sum(s[i : i + n]) // n for i in range(0, len(s) - n + 1, n))))
    return Pcm(data, pcm.rate, 1, 2)


def _biquad_lowpass(x: list[float], rate: int, cutoff: float, q: float) -> list[float]:
    # RBJ audio-EQ-cookbook low-pass, direct form I.
    w0 = 2 * math.pi * cutoff / rate
    alpha, cos_w0 = math.sin(w0) / (2 * q), math.cos(w0)
    a0 = 1 + alpha
    b0 = b2 = (1 - cos_w0) / 2 / a0
    b1 = (1 - cos_w0) / a0
    a1, a2 = -2 * cos_w0 / a0, (1 - alpha) / a0
    out: list[float] = []
    x1 = x2 = y1 = y2 = 0.0
    for v in x:
        y = b0 * v + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2
        out.append(y)
        x2, x1, y2, y1 = x1, v, y1, y
    return out


def resample(pcm: Pcm, rate: int) -> Pcm:
    """Resample 16-bit mono PCM to ``rate``: anti-alias low-pass when downsampling, then linear interpolation."""
    if pcm.channels != 1 or pcm.sample_width != 2:
        pcm = to_mono16(pcm)
    if rate == pcm.rate:
        return pcm
    x: list[float] = [float(v) for v in _samples(pcm.data)]
    if rate < pcm.rate and x:
        cutoff = 0.45 * rate  # 90 % of the new Nyquist frequency
        for q in (0.54119610, 1.3065630):  # the two sections of a 4th-order Butterworth
            x = _biquad_lowpass(x, pcm.rate, cutoff, q)
    n_out = len(x) * rate // pcm.rate
    step, last = pcm.rate / rate, len(x) - 1
    out = array("h")
    for i in range(n_out):
        pos = i * step
        j = int(pos)
        frac = pos - j
        v = x[j] if j >= last else x[j] + (x[j + 1] - x[j]) * frac
        out.append(max(-32768, min(32767, round(v))))
    return Pcm(_to_bytes(out), rate, 1, 2)


def peak(pcm: Pcm) -> int:
    """Largest absolute sample of 16-bit PCM (for the "not silent" check)."""
    s = _samples(to_mono16(pcm).data)
    return max((abs(v) for v in s), default=0)
