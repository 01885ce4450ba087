"""benchmarks/aec_speech's analysis on synthetic signals whose answer is known: the method behind docs/audio.md."""

from __future__ import annotations

import numpy as np

from benchmarks.aec_speech import RATE, analyse_run, canceller, lag_of


def _speechlike(seconds: float, seed: int) -> np.ndarray:
    """Noise bursts with pauses: 0.4 s on, 0.1 s off, so activity windows and pauses both exist."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.1, int(seconds * RATE))
    gate = (np.arange(len(x)) % int(0.5 * RATE)) < int(0.4 * RATE)
    return np.asarray(x * gate, dtype=np.float64)


def _place(x: np.ndarray, at: int, length: int) -> np.ndarray:
    out = np.zeros(length)
    out[at : at + len(x)] = x
    return out


def test_lag_of_finds_a_known_delay() -> None:
    ref = _speechlike(2, seed=1)
    assert lag_of(ref, _place(ref, 1234, len(ref) + 4000)) == 1234


def test_lag_of_finds_a_short_reference_placed_late_in_a_long_signal() -> None:
    """A visitor's 6 s sentence 18 s into a 25 s recording: the lag lies past half the FFT length, which the
    old split at n // 2 read as a negative lag (-239582 samples instead of 284706, seen on such a call)."""
    ref = _speechlike(6, seed=4)
    signal = _place(ref, 18 * RATE, 25 * RATE)
    assert lag_of(ref, signal) == 18 * RATE
    assert lag_of(signal, ref) == -18 * RATE  # and the other way round, a negative lag


def test_a_40_db_canceller_is_measured_as_40_db_and_keeps_the_visitor() -> None:
    far, near = _speechlike(12, seed=2), _speechlike(5, seed=3)
    n = 16 * RATE
    echo = 0.5 * _place(far, RATE // 2, n)  # the resident's voice back at the microphone, 0.5 s in
    visitor = _place(near, 10 * RATE, n)  # 2.5 s of double-talk, then the visitor alone
    mic = echo + visitor
    sent = np.concatenate([np.zeros(777), 0.01 * echo + visitor])  # -40 dB of echo, recorded 777 samples later
    figures = analyse_run(mic, sent, far, near)
    assert abs(figures["erle_median_after_2s_db"] - 40) < 1
    assert figures["converged_s"] == 0
    assert abs(figures["visitor_double_talk_db"]) < 0.5 and abs(figures["visitor_alone_db"]) < 0.5


def test_with_the_canceller_off_erle_is_zero_and_never_converges() -> None:
    far, near = _speechlike(12, seed=4), _speechlike(4, seed=5)
    n = 16 * RATE
    mic = 0.5 * _place(far, 1000, n) + _place(near, 11 * RATE, n)
    figures = analyse_run(mic, mic.copy(), far, near)
    assert figures["erle_median_after_2s_db"] == 0.0
    assert figures["converged_s"] is None


def test_canceller_specs() -> None:
    spec = canceller("webrtc:tail=150:lat=40:aggr:fifo")
    assert (spec.ec_options, spec.tail_ms, spec.latency_ms) == (3 | 0x3000 | 32, 150, 40)
    assert canceller("off").ec_options == -1


def test_seconds_the_sent_recording_missed_count_in_no_figure() -> None:
    """A recorder that started 3 s late: its missing start is not "perfect cancellation" (it read as ~90 dB)."""
    far, near = _speechlike(12, seed=6), _speechlike(4, seed=7)
    n = 16 * RATE
    echo = 0.5 * _place(far, RATE // 2, n)
    visitor = _place(near, 11 * RATE, n)
    figures = analyse_run(echo + visitor, (0.01 * echo + visitor)[3 * RATE :], far, near)
    assert max(figures["erle_median_by_second_db"]) < 45
    assert abs(figures["erle_median_after_2s_db"] - 40) < 1
