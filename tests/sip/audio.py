"""Tone analysis for the media tests: which of a few frequencies dominates each slice of a WAV."""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path


def _goertzel(samples: list[float], rate: int, freq: float) -> float:
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def tone_sequence(path: Path, freqs: list[float], slice_s: float = 0.1, min_rms: float = 300.0) -> list[float]:
    """The dominant frequency of ``freqs`` in each loud slice, runs collapsed: e.g. [500, 1000, 1500, 700]."""
    with wave.open(str(path), "rb") as w:
        rate, channels = w.getframerate(), w.getnchannels()
        raw = w.readframes(w.getnframes())
    samples = [float(v) for v in struct.unpack(f"<{len(raw) // 2}h", raw)][::channels]
    step = int(rate * slice_s)
    out: list[float] = []
    for i in range(0, len(samples) - step, step):
        chunk = samples[i : i + step]
        if math.sqrt(sum(x * x for x in chunk) / step) < min_rms:
            continue
        powers = {f: _goertzel(chunk, rate, f) for f in freqs}
        best = max(powers, key=lambda f: powers[f])
        if sum(powers.values()) and powers[best] / sum(powers.values()) > 0.8 and (not out or out[-1] != best):
            out.append(best)
    return out
