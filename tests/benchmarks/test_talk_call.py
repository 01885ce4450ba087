"""The talk-call benchmark (benchmarks/talk_call.py): its analysis on signals with known faults, and a short real
call that must produce every figure (never a bound on a timing: a busy machine must not fail here)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks._talk_capture import Packet, wire_stream
from benchmarks._talk_signal import PERIOD_S, chirp, find_markers, g711_decode, marker_track, pair
from benchmarks.cpu_quota import quota_unavailable

ROOT = Path(__file__).resolve().parents[2]
RATE = 16000


def _markers(x: np.ndarray, rate: int) -> np.ndarray:
    return find_markers(x, rate, chirp(rate, up=True)).positions


def test_a_dropped_and_an_inserted_stretch_are_found_with_their_size_and_time() -> None:
    near = marker_track(RATE, 12.0, up=True).astype(np.float64) / 32768
    cut, insert = round(4.2 * RATE), round(8.1 * RATE)  # between chirps: 20 ms lost, later 10 ms of silence added
    far = np.concatenate([near[:cut], near[cut + 320 : insert], np.zeros(160), near[insert:]])
    near_pos, far_pos = _markers(near, RATE), _markers(far, RATE)
    assert len(near_pos) == len(far_pos) == 24
    # The far end hears each chirp 95 ms after its (shifted) position: times on one clock.
    result = pair(near_pos / RATE, near_pos / RATE, far_pos / RATE + 0.095, far_pos / RATE)
    summary = result.summary()
    assert summary["markers_paired"] == summary["markers_sent"] == 24
    assert [(round(when), round(size)) for when, size in result.discontinuities()] == [(4, -20), (8, 10)]
    assert (summary["dropped_ms"], summary["inserted_ms"]) == (20.0, 10.0)
    # A sender's stall at 4.0 s explains the step that follows it within 1 s, not the one at 8 s.
    assert [round(s) for s in result.following([result.origin + 4.0], window_s=1.0)] == [-20]
    # 95 ms for the 9 chirps before the cut, 75 ms for the 8 after it, 85 ms for the 7 after the insertion
    lows_and_highs = (summary["latency_min_ms"], summary["latency_median_ms"], summary["latency_max_ms"])
    assert lows_and_highs == pytest.approx((75.0, 85.0, 95.0), abs=0.2)


def test_the_other_directions_chirp_is_not_taken_for_a_marker() -> None:
    resident = marker_track(RATE, 5.0, up=False).astype(np.float64) / 32768
    visitor = marker_track(RATE, 5.0, up=True, lead_s=PERIOD_S / 2).astype(np.float64) / 32768
    found = _markers(resident + 0.5 * visitor, RATE)  # the resident's echo under the visitor
    assert len(found) == 10  # 0.25 s, 0.75 s ... 4.75 s: the visitor's, none of the resident's
    assert np.allclose(found % (PERIOD_S * RATE), PERIOD_S * RATE / 2, atol=1)


def test_g711_decodes_both_laws() -> None:
    assert list(g711_decode(bytes([0xFF, 0x00, 0x80]), 0) * 32768) == [0, -32124, 32124]
    assert list(g711_decode(bytes([0xD5, 0x55, 0x2A, 0xAA]), 8) * 32768) == [8, -8, -32256, 32256]


def test_wire_stream_places_packets_by_timestamp_and_counts_gaps_across_the_wrap() -> None:
    silence = bytes([0xFF]) * 160
    packets = [
        Packet(1.00, "to_phone", 65534, 1000, 0, silence),
        Packet(1.02, "to_phone", 65535, 1160, 0, silence),
        Packet(1.06, "to_phone", 1, 1480, 0, silence),  # 0 lost, and with it 1320..1479
        Packet(1.01, "from_phone", 7, 0, 8, silence),
    ]
    stream = wire_stream(packets, "to_phone")
    assert (stream.packets, stream.rtp_gaps, len(stream.samples)) == (3, 1, 640)
    assert stream.packet_at[0] == 1.00 and stream.packet_at[639] == 1.06
    assert np.isnan(stream.packet_at[320:480]).all()


def test_a_late_packet_lands_before_its_successor_and_another_senders_packets_are_left_out() -> None:
    silence = bytes([0xFF]) * 160
    packets = [Packet(1.02, "from_phone", 11, 160, 0, silence), Packet(1.03, "from_phone", 10, 0, 0, silence)]
    packets.insert(1, Packet(1.025, "from_phone", 999, 123456789, 0, silence, ssrc=7))  # another job's stream
    stream = wire_stream(packets, "from_phone")
    assert (len(stream.samples), stream.rtp_gaps, stream.foreign_packets) == (320, 0, 1)
    assert (stream.packet_at[0], stream.packet_at[160]) == (1.03, 1.02)


@pytest.mark.peers
@pytest.mark.timeout(240)
@pytest.mark.skipif(os.geteuid() != 0, reason="reading RTP on lo (AF_PACKET) needs root")
@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("pulseaudio", "parec", "baresip")),
    reason="needs Debian's pulseaudio, pulseaudio-utils and baresip",
)
def test_a_short_call_produces_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "talk.json"
    quota = "0.25" if quota_unavailable() is None else "0"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.talk_call", "--minutes", "0.15", "--quota", quota, "--json", str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    if "no sound device" in proc.stdout + proc.stderr:
        pytest.skip("this pjsua2 has no sound device: the talk path needs a source build")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    results = json.loads(out.read_text(encoding="utf-8"))["results"]
    assert len(results) == (2 if quota != "0" else 1)
    for run in results.values():
        assert 0 < run["cpu_share_of_core"] < 1, run
        assert run["stream"]["rx_packets"] > 0, run
        for direction in ("visitor_to_resident", "resident_to_visitor"):
            figures = run[direction]
            # Sane, not fast: every chirp but a few crossed, the latency is positive and under the chirp period.
            assert figures["markers_paired"] >= figures["markers_sent"] - 3 > 0, figures
            assert 0 < figures["latency_median_ms"] <= figures["latency_p99_ms"] < 500, figures
    assert "## A 10-minute call: latency, frames, CPU" in proc.stdout
