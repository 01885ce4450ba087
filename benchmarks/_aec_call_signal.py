"""The signal side of :mod:`benchmarks.aec_call`: what the panel sent, placed and aligned on the microphone's
samples, and the visitor's level in it."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np

from benchmarks._talk_capture import Packet
from benchmarks._talk_signal import g711_decode
from benchmarks.aec_speech import RATE, WINDOW, Signal, lag_of, level_db, shifted

__all__ = ["aligned_to_mic", "band_limit", "sent_on_card_time", "upsample", "visitor_levels"]

PHONE_RATE = 8000
ENVELOPE_PACKETS = 51  # 1 s of 20 ms packets: the window of the arrival-time envelope


def upsample(x: Signal, factor: int) -> Signal:
    """Band-limited upsampling by an integer factor (zero-padded spectrum)."""
    spectrum = np.fft.rfft(x)
    padded = np.zeros(len(x) * factor // 2 + 1, dtype=complex)
    padded[: len(spectrum)] = spectrum
    return np.fft.irfft(padded, len(x) * factor) * factor


def band_limit(x: Signal, rate: int, cutoff_hz: float) -> Signal:
    """``x`` with nothing above ``cutoff_hz`` (what a G.711 call can carry of the microphone)."""
    spectrum = np.fft.rfft(x)
    spectrum[int(cutoff_hz * len(x) / rate) :] = 0
    return np.fft.irfft(spectrum, len(x))


def sent_on_card_time(packets: list[Packet], card_start: float) -> tuple[Signal, float] | None:
    """What the panel sent the phone, decoded at 16 kHz and placed in the time of the microphone recording whose
    first sample the card handed out at ``card_start`` (monotonic); and the share of the stream's time no packet
    covered (silence detection, stalls).

    Each packet goes where its RTP timestamp puts it, shifted by the lower envelope (over 1 s) of its arrival
    time minus its timestamp time. The timestamps alone drift from the card: frames the panel drops or inserts
    between the card and the stream do not show in them (1.5 s in 13 s was seen at a load of 15, and far-end
    windows then compared the wrong seconds); arrival times alone carry the scheduler's jitter, which breaks the
    sample alignment the visitor's projection needs. The envelope follows the first and ignores the second."""
    chosen = [p for p in packets if p.direction == "to_phone"]
    if not chosen:
        return None
    ssrc = Counter(p.ssrc for p in chosen).most_common(1)[0][0]
    chosen = [p for p in chosen if p.ssrc == ssrc]
    stamps = [0]
    for before, after in itertools.pairwise(chosen):
        stamps.append(stamps[-1] + ((after.timestamp - before.timestamp + (1 << 31)) % (1 << 32)) - (1 << 31))
    arrival = np.asarray([(p.at - card_start) * PHONE_RATE for p in chosen])
    offset = arrival - np.asarray(stamps, dtype=np.float64)
    half = ENVELOPE_PACKETS // 2
    padded = np.concatenate([np.full(half, np.inf), offset, np.full(half, np.inf)])
    envelope = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1).min(axis=1)
    positions = [round(stamp + shift) for stamp, shift in zip(stamps, envelope, strict=True)]
    start = min(positions)
    length = max(positions) - start + max(len(p.payload) for p in chosen)
    at_8k, filled = np.zeros(length), np.zeros(length, dtype=bool)
    for pos, p in zip(positions, chosen, strict=True):
        payload = g711_decode(p.payload, p.payload_type)
        at_8k[pos - start : pos - start + len(payload)] = payload
        filled[pos - start : pos - start + len(payload)] = True
    lead = start * (RATE // PHONE_RATE)  # the card's recording started before the call
    sent = np.concatenate([np.zeros(max(lead, 0)), upsample(at_8k, RATE // PHONE_RATE)])[max(-lead, 0) :]
    return sent, round(1.0 - float(filled.mean()), 3)


def aligned_to_mic(mic: Signal, sent: Signal, block: int = RATE // 2, search: int = RATE * 30 // 1000) -> Signal:
    """``sent`` moved block by block (0.5 s) onto ``mic``'s samples. The path between them is not one delay
    for a whole call: pjmedia's buffers drop, insert and time-stretch audio (the lag moved by 7 ms within the
    visitor's 6 s in one call), and the visitor's projection needs them aligned to the sample. Each block takes
    the lag at which it correlates with the microphone (within ``search`` of the last one, and only where it
    does correlate: where the canceller removed the echo, nothing in ``sent`` matches, and the last lag holds)."""
    lag, out = lag_of(mic, sent), np.zeros(len(mic))
    for start in range(0, len(mic), block):
        segment = mic[start : start + block]
        low = start + lag - search
        if low >= 0 and len(segment) == block:
            candidate = sent[low : low + block + 2 * search]
            found = low + lag_of(segment, candidate) - start
            moved = sent[start + found : start + found + block]
            if abs(found - lag) <= search and len(moved) == block and _correlation(segment, moved) > 0.5:
                lag = found
        source = start + lag
        piece = sent[max(source, 0) : source + block]
        at = start + max(-source, 0)  # a block that would start before sent's first sample keeps its place
        piece = piece[: len(out) - at]  # the microphone's last block is short
        out[at : at + len(piece)] = piece
    return out


def visitor_levels(mic: Signal, sent: Signal, far: Signal, near: Signal) -> dict[str, float | None]:
    """The visitor's level in what was sent against the visitor's part of the microphone, by 250 ms windows of
    double-talk and of the visitor alone: levels, not :func:`analyse_run`'s projections, which need the sample
    alignment that pjmedia's buffers break now and then within a call (projections read -6 to -12 dB where the
    levels matched). The visitor's part of the microphone is its reference scaled by its projection (one card
    clock: aligned to the sample). In double-talk the sent level also holds the residual echo, so the figure is
    an upper bound of the visitor's level there."""
    far_ref = shifted(far, lag_of(far, mic), len(mic))
    near_ref = shifted(near, lag_of(near, mic), len(mic))
    near_ref *= float(np.dot(mic, near_ref)) / max(float(np.dot(near_ref, near_ref)), 1e-12)
    count = len(mic) // WINDOW
    far_lv = [level_db(far_ref[i * WINDOW : (i + 1) * WINDOW]) for i in range(count)]
    near_lv = [level_db(near_ref[i * WINDOW : (i + 1) * WINDOW]) for i in range(count)]
    result: dict[str, float | None] = {}
    for key, both in (("visitor_double_talk_db", True), ("visitor_alone_db", False)):
        picked = [i for i in range(count) if near_lv[i] > max(near_lv) - 30 and (far_lv[i] > max(far_lv) - 30) == both]
        if not picked:
            result[key] = None
            continue
        idx = np.concatenate([np.arange(i * WINDOW, (i + 1) * WINDOW) for i in picked])
        result[key] = round(level_db(sent[idx]) - level_db(near_ref[idx]), 1)
    return result


def _correlation(a: Signal, b: Signal) -> float:
    energy = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return float(np.dot(a, b)) / energy if energy > 0 else 0.0
