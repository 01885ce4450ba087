"""The talk-call benchmark's signals and their analysis: marker tracks, G.711, finding markers, pairing them.

Each direction carries a chirp every ``PERIOD_S`` (the visitor an up-chirp, the resident a down-chirp, so the
echo of one is not taken for the other). A marker found at both ends gives two figures:

* its **latency**: the time it was found at the far end minus the time it was found at the near end, on one
  clock (``time.monotonic``);
* its **content offset**: its position in the far end's sample stream minus its position in the near end's.
  Both streams are clocked samples, so the offset is constant unless audio was dropped (it falls) or inserted
  (it rises) in between: each step of it is a discontinuity, its size the audio lost or added.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "CHIRP_S",
    "PERIOD_S",
    "Found",
    "Pairing",
    "chirp",
    "find_markers",
    "g711_decode",
    "marker_track",
    "pair",
]

Signal = npt.NDArray[np.float64]

PERIOD_S = 0.5  # one marker per half second each way: a discontinuity is placed within 0.5 s
CHIRP_S = 0.06
LOW_HZ, HIGH_HZ = 400.0, 3200.0  # inside G.711's band
AMPLITUDE = 0.3  # -10 dBFS peak: speech-like level, no clipping after the resident's gain
NCC_THRESHOLD = 0.4  # normalised cross-correlation of a found marker (G.711, the canceller and AGC pass > 0.6)
STEP_MS = 2.0  # a content offset change larger than this between two markers is a discontinuity
SETTLE_S = 5.0  # the call's first seconds: the jitter buffer and pjmedia's delay buffers find their level


def chirp(rate: int, *, up: bool) -> Signal:
    """A ``CHIRP_S`` linear sweep between LOW_HZ and HIGH_HZ with 5 ms raised-cosine edges."""
    n = round(CHIRP_S * rate)
    t = np.arange(n) / rate
    f0, f1 = (LOW_HZ, HIGH_HZ) if up else (HIGH_HZ, LOW_HZ)
    x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * CHIRP_S)))
    edge = round(0.005 * rate)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(edge) / edge)
    x[:edge] *= ramp
    x[-edge:] *= ramp[::-1]
    return np.asarray(AMPLITUDE * x)


def marker_track(rate: int, seconds: float, *, up: bool, lead_s: float = 0.0) -> npt.NDArray[np.int16]:
    """``seconds`` of silence with a chirp every PERIOD_S from ``lead_s`` on, as 16-bit samples."""
    out = np.zeros(round(seconds * rate))
    c = chirp(rate, up=up)
    start = lead_s
    while round(start * rate) + len(c) <= len(out):
        i = round(start * rate)
        out[i : i + len(c)] = c
        start += PERIOD_S
    return np.asarray(np.round(out * 32767), dtype=np.int16)


def _ulaw_table() -> Signal:
    codes = np.arange(256)
    u = ~codes & 0xFF
    sign, exponent, mantissa = u & 0x80, (u >> 4) & 0x07, u & 0x0F
    magnitude = ((mantissa << 3) + 0x84) << exponent
    return np.where(sign != 0, 0x84 - magnitude, magnitude - 0x84) / 32768.0


def _alaw_table() -> Signal:
    codes = np.arange(256) ^ 0x55
    sign, exponent, mantissa = codes & 0x80, (codes >> 4) & 0x07, codes & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(sign != 0, magnitude, -magnitude) / 32768.0


_TABLES = {0: _ulaw_table(), 8: _alaw_table()}  # RTP payload types 0 (PCMU) and 8 (PCMA)


def g711_decode(payload: bytes, payload_type: int) -> Signal:
    return np.asarray(_TABLES[payload_type][np.frombuffer(payload, dtype=np.uint8)])


def _correlate(x: Signal, template: Signal) -> Signal:
    """corr[n] = sum_i x[n + i] * template[i], by overlap-save FFTs (a 10-minute recording in blocks)."""
    m = len(template)
    size = 1 << 18
    step = size - m + 1
    kernel = np.conj(np.fft.rfft(template, size))
    out = np.zeros(max(len(x) - m + 1, 0))
    for start in range(0, len(out), step):
        block = x[start : start + size]
        corr = np.fft.irfft(np.fft.rfft(block, size) * kernel, size)
        count = min(step, len(out) - start)
        out[start : start + count] = corr[:count]
    return out


@dataclass(frozen=True)
class Found:
    """Markers found in one recording: positions in samples (fractional) and their match quality."""

    positions: Signal
    ncc: Signal


def find_markers(x: Signal, rate: int, template: Signal) -> Found:
    """Every place where ``template`` matches ``x`` (normalised cross-correlation above NCC_THRESHOLD), one per
    marker: the best match within each cluster of matches closer than a quarter period."""
    m = len(template)
    if len(x) < m:
        return Found(np.zeros(0), np.zeros(0))
    corr = _correlate(x, template)
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    local = energy[m:] - energy[: len(energy) - m]
    ncc = corr / np.sqrt(np.maximum(local, 1e-12) * float(np.dot(template, template)))
    above = np.flatnonzero(ncc > NCC_THRESHOLD)
    if above.size == 0:
        return Found(np.zeros(0), np.zeros(0))
    groups = np.split(above, np.flatnonzero(np.diff(above) > PERIOD_S * rate / 4) + 1)
    positions, quality = [], []
    for group in groups:
        best = int(group[np.argmax(ncc[group])])
        positions.append(best + _parabolic(corr, best))
        quality.append(float(ncc[best]))
    return Found(np.asarray(positions), np.asarray(quality))


def _parabolic(y: Signal, i: int) -> float:
    """Sub-sample offset of the peak at ``i`` (a parabola through it and its neighbours)."""
    if i <= 0 or i >= len(y) - 1:
        return 0.0
    a, b, c = float(y[i - 1]), float(y[i]), float(y[i + 1])
    denominator = a - 2 * b + c
    return 0.0 if denominator == 0 else 0.5 * (a - c) / denominator


@dataclass(frozen=True)
class Pairing:
    """Markers of one direction found at both ends: times in seconds (monotonic), content positions in seconds."""

    sent: int  # markers found at the near end
    latency_ms: list[float]
    offsets_ms: list[float]  # far-end position - near-end position, per paired marker
    times_s: list[float]  # when each paired marker reached the far end, from the first one
    origin: float = 0.0  # the first one's time (monotonic)
    missing_near_s: tuple[float, ...] = ()  # near-end positions (s) of the markers sent but not paired

    def discontinuities(self) -> list[tuple[float, float]]:
        """Steps of the content offset between consecutive markers: (when, s; size, ms: negative = dropped)."""
        steps = np.diff(np.asarray(self.offsets_ms))
        return [(round(self.times_s[i + 1], 1), round(float(s), 2)) for i, s in enumerate(steps) if abs(s) > STEP_MS]

    def summary(self) -> dict[str, Any]:
        found = self.discontinuities()
        steps = [size for _when, size in found]
        settled = [size for when, size in found if when >= SETTLE_S]
        lat = sorted(self.latency_ms)
        return {
            "markers_sent": self.sent,
            "markers_paired": len(lat),
            "markers_missing": self.sent - len(lat),
            "latency_median_ms": round(float(np.median(lat)), 1) if lat else None,
            "latency_p99_ms": round(lat[max(0, math.ceil(0.99 * len(lat)) - 1)], 1) if lat else None,
            "latency_min_ms": round(lat[0], 1) if lat else None,
            "latency_max_ms": round(lat[-1], 1) if lat else None,
            "discontinuities": len(steps),
            "dropped_ms": round(-sum(s for s in steps if s < 0), 1),
            "inserted_ms": round(sum(s for s in steps if s > 0), 1),
            "discontinuities_settled": len(settled),
            "dropped_settled_ms": round(-sum(s for s in settled if s < 0), 1),
            "inserted_settled_ms": round(sum(s for s in settled if s > 0), 1),
            "steps_ms": steps[:50],
            "step_times_s": [when for when, _size in self.discontinuities()][:50],
            "offset_drift_ms": round(self.offsets_ms[-1] - self.offsets_ms[0], 2) if self.offsets_ms else None,
        }


def pair(near_times: Signal, near_pos_s: Signal, far_times: Signal, far_pos_s: Signal) -> Pairing:
    """Pair each far-end marker with the latest near-end marker before it (the latency is under PERIOD_S)."""
    latency, offsets, times = [], [], []
    order = np.argsort(near_times)
    near_times, near_pos_s = near_times[order], near_pos_s[order]
    used: set[int] = set()
    for t, pos in zip(far_times, far_pos_s, strict=True):
        k = int(np.searchsorted(near_times, t)) - 1
        if k < 0 or t - near_times[k] >= PERIOD_S or k in used:
            continue
        used.add(k)
        latency.append(1000 * float(t - near_times[k]))
        offsets.append(1000 * float(pos - near_pos_s[k]))
        times.append(float(t - far_times[0]))
    # Markers sent while the far end was listening: not those before its recording started or after it stopped.
    if not used:
        return Pairing(0, latency, offsets, times)
    origin = float(far_times[0])
    window = (near_times > far_times[0] - PERIOD_S) & (near_times <= near_times[max(used)])
    sent = int(np.sum(window))
    paired = np.zeros(len(near_times), dtype=bool)
    paired[list(used)] = True
    missing = tuple(float(x) for x in near_pos_s[window & ~paired])
    return Pairing(sent, latency, offsets, times, origin, missing)
