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

from benchmarks._talk_capture import Packet, RtpSniffer, direction_of, overlapping, panel_rtp_ports, wire_stream
from benchmarks._talk_causes import Evidence, Stall, TalkDirection, attribute, card_stalls, cause_summary, gaps_over
from benchmarks._talk_peers import FavouredPeers
from benchmarks._talk_signal import PERIOD_S, Pairing, chirp, find_markers, g711_decode, marker_track, pair
from benchmarks.cpu_quota import quota_unavailable
from daemon.simulation.phone import Baresip

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
    # 95 ms for the 9 chirps before the cut, 75 ms for the 8 after it, 85 ms for the 7 after the insertion
    lows_and_highs = (summary["latency_min_ms"], summary["latency_median_ms"], summary["latency_max_ms"])
    assert lows_and_highs == pytest.approx((75.0, 85.0, 95.0), abs=0.2)


def _pairing(steps: dict[int, float], chirps: int = 60, origin: float = 100.0) -> Pairing:
    """Chirps every 0.5 s from ``origin`` whose content offset steps by ``steps[i]`` ms at chirp ``i``."""
    offsets, offset = [], 50.0
    for i in range(chirps):
        offset += steps.get(i, 0.0)
        offsets.append(offset)
    return Pairing(chirps, [90.0] * chirps, offsets, [0.5 * i for i in range(chirps)], origin)


def _evidence(phone: tuple[Stall, ...] = (), panel: tuple[Stall, ...] = (), card: tuple[Stall, ...] = ()) -> Evidence:
    return Evidence(phone_stalls=list(phone), panel_stalls=list(panel), card_stalls=list(card), call_start=98.0)


def _causes(pairing: Pairing, direction: TalkDirection, evidence: Evidence) -> list[tuple[float, float, str]]:
    return [(s.when_s, s.size_ms, s.cause) for s in attribute(pairing, direction, evidence)]


def test_a_phone_stall_and_the_jitter_buffer_catching_up_behind_it_are_the_phones_and_a_lone_step_the_panels() -> None:
    # The phone stops 250 ms before chirp 20 (at 110.0 s): its gap is concealed (+250), then dropped 30/20 ms at a time;
    # later a lone 10 ms frame inserted and one dropped, no stall anywhere near: the panel's jitter buffer.
    steps = {20: 250.0, **{i: -30.0 if i % 2 else -20.0 for i in range(21, 31)}, 40: 10.0, 44: -10.0}
    pairing = _pairing(steps)
    found = _causes(pairing, "resident_to_visitor", _evidence(phone=(Stall(109.6, 109.85),)))
    assert [c for _w, _s, c in found[:11]] == ["phone stall"] * 11
    assert found[11:] == [(20.0, 10.0, "jitter buffer"), (22.0, -10.0, "jitter buffer")]
    summary = cause_summary(attribute(pairing, "resident_to_visitor", _evidence(phone=(Stall(109.6, 109.85),))))
    assert summary["by_cause"] == {"phone stall": 11, "jitter buffer": 2}
    assert summary["net_ms_by_cause"] == {"phone stall": 0.0, "jitter buffer": 0.0}
    assert (summary["panel"], summary["not_panel"]) == (2, 11)


def test_the_recovery_stops_where_the_offset_is_back_and_a_later_step_is_not_let_off() -> None:
    steps = {20: 40.0, 22: -20.0, 23: -20.0, 26: -10.0}  # the -10 at chirp 26 undoes nothing left of the stall
    found = _causes(_pairing(steps), "resident_to_visitor", _evidence(phone=(Stall(109.7, 109.8),)))
    assert [c for _w, _s, c in found] == ["phone stall", "phone stall", "phone stall", "jitter buffer"]


def test_a_stall_of_another_cause_meanwhile_does_not_cut_the_first_stalls_recovery_short() -> None:
    # The card stops (+120 ms concealed), the panel stalls briefly (-5 ms) on the next chirp, then the jitter buffer
    # drops the card's 120 ms 20 ms at a time: those are the card's, not the panel's jitter buffer.
    steps = {20: 120.0, 21: -5.0, **{i: -20.0 for i in range(22, 28)}}
    evidence = _evidence(card=(Stall(109.3, 109.5),), panel=(Stall(110.05, 110.15),))
    found = _causes(_pairing(steps), "resident_to_visitor", evidence)
    assert [c for _w, _s, c in found] == ["card stall", "panel stall", *["card stall"] * 6]


def test_a_panel_stall_is_the_panels_even_if_the_phone_stopped_too_and_the_phone_never_explains_the_panels_audio() -> (
    None
):
    both = _evidence(phone=(Stall(109.6, 109.85),), panel=(Stall(109.7, 109.9),))
    assert _causes(_pairing({20: 200.0}), "resident_to_visitor", both) == [(10.0, 200.0, "panel stall")]
    phone_only = _evidence(phone=(Stall(109.6, 109.85),))
    assert _causes(_pairing({20: -30.0}), "visitor_to_resident", phone_only) == [(10.0, -30.0, "capture side")]


def test_the_card_opening_and_the_first_seconds_are_the_call_start_and_a_stopped_card_is_the_simulations() -> None:
    # The panel's stall 0.3 s after its first packet (98.0 s) is the card opening; a step in the first 5 s with no
    # stall is the buffers finding their level; both the panel's. Both recorders waiting at once: the card.
    steps = {1: 30.0, 6: -10.0, 30: -60.0}
    evidence = _evidence(panel=(Stall(98.3, 100.4),), card=(Stall(114.6, 114.8),))
    found = attribute(_pairing(steps), "visitor_to_resident", evidence)
    assert [(s.cause, s.panel) for s in found] == [("call start", True), ("call start", True), ("card stall", False)]


def test_stalls_are_gaps_over_60_ms_and_the_card_stalls_only_where_both_recorders_waited() -> None:
    times = np.asarray([0.0, 0.02, 0.04, 0.14, 0.16, 0.20, 0.3])
    assert [(s.start, round(s.ms)) for s in gaps_over(times)] == [(0.04, 100), (0.2, 100)]
    spk = [Stall(0.04, 0.14), Stall(5.0, 5.05)]
    mic = [Stall(0.06, 0.20), Stall(5.0, 5.2)]
    assert card_stalls(spk, mic) == [Stall(0.06, 0.14)]  # 5.0-5.05 overlaps for 50 ms only


def test_markers_not_paired_are_listed_by_their_near_end_position() -> None:
    near = np.asarray([1.0, 1.5, 2.0, 2.5])
    far_t, far_pos = np.asarray([1.1, 2.1, 2.6]), np.asarray([1.0, 2.0, 2.5])  # the one at 1.5 s never arrived
    result = pair(near, near, far_t, far_pos)
    assert (result.sent, result.missing_near_s) == (4, (1.5,))


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


def _paced_packets(seconds: float, ppm: float, stalls: dict[int, float]) -> list[Packet]:
    """A sender whose media clock runs ``ppm`` fast of the wire's: packet k (160 samples) leaves at
    ``k * 0.02 / (1 + ppm / 1e6)``, and ``stalls`` {k: s} holds packets k.. back for s, sent in a burst after."""
    silence = bytes([0xFF]) * 160
    packets, held_until = [], 0.0
    for k in range(int(seconds / 0.02)):
        at = 100.0 + k * 0.02 / (1 + ppm / 1e6)
        held_until = max(held_until, at + stalls.get(k, 0.0))  # a packet leaves once the stall before it is over
        packets.append(Packet(held_until, "to_phone", k % 65536, (5000 + 160 * k) % (1 << 32), 0, silence))
    return packets


def test_a_senders_media_clock_is_read_from_its_timestamps_and_stalls_do_not_move_it() -> None:
    """The talk call's +20 ms jitter-buffer steps every ~60 s were a clock mismatch (the panel's conference, clocked
    by the card, ran ~300 ppm fast): the report gives each sender's clock. Stalls (bursts after 150-300 ms) must not
    read as a slower clock."""
    for ppm in (-350.0, 0.0, 310.0):
        stalls = {1000: 0.3, 4000: 0.15, 7000: 0.25}
        assert wire_stream(_paced_packets(180, ppm, stalls), "to_phone").clock_ppm == pytest.approx(ppm, abs=3)
    assert wire_stream(_paced_packets(15, 300.0, {}), "to_phone").clock_ppm is None  # two 10 s windows: too short


def test_a_late_packet_lands_before_its_successor_and_another_senders_packets_are_left_out() -> None:
    silence = bytes([0xFF]) * 160
    packets = [Packet(1.02, "from_phone", 11, 160, 0, silence), Packet(1.03, "from_phone", 10, 0, 0, silence)]
    packets.insert(1, Packet(1.025, "from_phone", 999, 123456789, 0, silence, ssrc=7))  # another job's stream
    stream = wire_stream(packets, "from_phone")
    assert (len(stream.samples), stream.rtp_gaps, stream.foreign_packets) == (320, 0, 1)
    assert (stream.packet_at[0], stream.packet_at[160]) == (1.03, 1.02)


def test_the_panels_rtp_ports_never_overlap_the_phones_so_each_packet_has_one_direction(tmp_path: Path) -> None:
    """A talk call once paired 0 / 0 chirps both ways with no error: the phone's RTP range (from its SIP port) and the
    panel's (from another free port) overlapped, and with each end's port inside both, every packet of the call was
    taken as "to_phone" and the phone's stream (the more packets) as the panel's. Reproduced by forcing the ports
    below (the harness before chose the panel's base as 21000 + (pick % 50) * 200, here 23000: the phone's own)."""
    phone = Baresip(tmp_path)  # not started: only its ports are read
    phone.port = 53000
    assert phone.rtp_ports == range(23000, 23100)
    panel = panel_rtp_ports(phone.rtp_ports, pick=10)
    assert not overlapping(panel, phone.rtp_ports)
    phone_port = 23050  # baresip picks its port at random within its range
    assert direction_of(phone_port, panel.start, phone.rtp_ports, panel) == "from_phone"
    assert direction_of(panel.start, phone_port, phone.rtp_ports, panel) == "to_phone"
    # Every SIP port the phone can get (Linux's ephemeral range) and every pick: disjoint.
    for sip_port in range(32768, 61000):
        phone.port = sip_port
        assert not overlapping(panel_rtp_ports(phone.rtp_ports, sip_port * 7), phone.rtp_ports), sip_port
    with pytest.raises(ValueError, match="overlap"):  # and the sniffer refuses ranges it could not tell apart
        RtpSniffer(range(23000, 23100), range(23000, 23100))


@pytest.mark.skipif(quota_unavailable() is not None, reason="creating a cgroup needs root and a cpu controller")
def test_the_favoured_group_holds_this_process_and_what_it_starts_and_is_removed_after() -> None:
    with FavouredPeers() as favoured:
        assert favoured.active
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
        members = (favoured.path / "cgroup.procs").read_text().split()
        assert {str(os.getpid()), str(child.pid)} <= set(members)
        assert "cpu.shares 8192" in favoured.describe() or "cpu.weight 800" in favoured.describe()
        child.communicate(timeout=10)
    assert not favoured.path.exists()
    assert str(os.getpid()) in (favoured.root / "cgroup.procs").read_text().split()


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
            # Every discontinuity has a cause, and the panel's are counted apart from the simulation's.
            causes = figures["causes"]
            assert causes["panel"] + causes["not_panel"] == figures["discontinuities"], figures
        assert run["steal_share"] >= 0 and run["peers"], run
    assert "## A 10-minute call: latency, frames, CPU" in proc.stdout


def test_a_call_whose_recordings_held_no_chirp_is_reported_as_not_measured_not_as_zero_discontinuities() -> None:
    """A combined bench run once printed "0 / 0 chirps, 0 discontinuities" for a call it had not measured."""
    from benchmarks._talk_report import figure_from

    empty = {
        "latency_median_ms": None,
        "latency_p99_ms": None,
        "markers_paired": 0,
        "markers_sent": 0,
        "discontinuities": 0,
        "discontinuities_settled": 0,
        "dropped_ms": 0,
        "inserted_ms": 0,
    }
    saved = {
        "minutes": 1.0,
        "results": {
            "quota": {
                "visitor_to_resident": empty,
                "resident_to_visitor": empty,
                "cpu_share_of_core": 0.1,
                # Which end had no chirp, and the packets each way: the next such run says why.
                "markers_found": {"microphone": 120, "wire_to_phone": 0, "wire_from_phone": 126, "speaker": 0},
                "rtp": {"to_phone_packets": 3100, "from_phone_packets": 0, "foreign_packets": 2900},
            }
        },
    }
    rows = figure_from(saved).tables[0][1]
    assert [row[1] for row in rows] == ["error", "error"]
    assert all("not measured" in row[2] for row in rows)
    assert "microphone 120, wire to phone 0, wire from phone 126, speaker 0" in rows[0][2]
    assert "to / from the phone 3100 / 0, of another stream 2900" in rows[0][2]
