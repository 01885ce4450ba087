"""The talk-call benchmark's analysis (benchmarks/talk_call.py): chirps found at both ends of each direction,
paired, and each discontinuity given its cause (benchmarks/_talk_causes.py)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._talk_capture import Direction, Packet, Recording, WireStream, wire_stream
from benchmarks._talk_causes import Evidence, Stall, attribute, card_stalls, cause_summary, gaps_over
from benchmarks._talk_signal import CHIRP_S, chirp, find_markers, pair
from daemon.simulation.paced_card import RATE

__all__ = ["PHONE_RATE", "analyse", "card_markers", "reanalysed"]

PHONE_RATE = 8000


def _wire_markers(stream: WireStream, up: bool) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Times (the packet carrying the marker's first sample crossed the wire) and positions (s) of markers."""
    found = find_markers(stream.samples, PHONE_RATE, chirp(PHONE_RATE, up=up))
    at = stream.packet_at[np.floor(found.positions).astype(int)] if found.positions.size else np.zeros(0)
    keep = ~np.isnan(at)
    return at[keep], found.positions[keep] / PHONE_RATE


def card_markers(rec: Recording, up: bool) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    found = find_markers(rec.samples(), RATE, chirp(RATE, up=up))
    return rec.times_of(found.positions), found.positions / RATE


def analyse(mic: Recording, spk: Recording, packets: list[Packet]) -> dict[str, Any]:
    to_phone, from_phone = wire_stream(packets, "to_phone"), wire_stream(packets, "from_phone")
    ends = {
        "microphone": card_markers(mic, up=True),
        "wire_to_phone": _wire_markers(to_phone, up=True),
        "wire_from_phone": _wire_markers(from_phone, up=False),
        "speaker": card_markers(spk, up=False),
    }
    visitor = pair(*ends["microphone"], *ends["wire_to_phone"])
    resident = pair(*ends["wire_from_phone"], *ends["speaker"])
    blocks = mic.read_intervals_ms() + spk.read_intervals_ms()
    # Each discontinuity's cause (benchmarks/_talk_causes.py): the phone's and the card's stalls are the
    # simulation's (the resident's phone is another device; a real card does not stop), the rest the panel's.
    phone_stalls, panel_stalls = _send_stalls(packets, "from_phone"), _send_stalls(packets, "to_phone")
    card = card_stalls(gaps_over(mic.read_times()), gaps_over(spk.read_times()))
    panel_at = [p.at for p in packets if p.direction == "to_phone"]
    evidence = Evidence(phone_stalls, panel_stalls, card, min(panel_at) if panel_at else 0.0)
    heard, sent = resident.summary(), visitor.summary()
    sent["missing_in_double_talk"] = _overlapping_echo(visitor.missing_near_s, mic)
    heard["causes"] = cause_summary(attribute(resident, "resident_to_visitor", evidence))
    sent["causes"] = cause_summary(attribute(visitor, "visitor_to_resident", evidence))
    return {
        "visitor_to_resident": sent,
        "resident_to_visitor": heard,
        "phone_send_stalls": _listed(phone_stalls, resident.origin),
        "panel_send_stalls": _listed(panel_stalls, resident.origin),
        "card_stalls": _listed(card, resident.origin),
        "rtp": {
            "to_phone_packets": to_phone.packets,
            "to_phone_gaps": to_phone.rtp_gaps,
            "from_phone_packets": from_phone.packets,
            "from_phone_gaps": from_phone.rtp_gaps,
            "timestamp_jumps": to_phone.timestamp_jumps + from_phone.timestamp_jumps,
            "foreign_packets": to_phone.foreign_packets + from_phone.foreign_packets,
            "panel_clock_ppm": to_phone.clock_ppm,
            "phone_clock_ppm": from_phone.clock_ppm,
        },
        "card_read_interval_ms_median": round(float(np.median(blocks)), 1) if blocks else None,
        # Chirps found at each end before pairing: where a direction paired none, which end had none.
        "markers_found": {end: len(times) for end, (times, _positions) in ends.items()},
    }


def _overlapping_echo(missing_s: tuple[float, ...], mic: Recording) -> int:
    """How many of the visitor's chirps not found at the phone overlapped the resident's echo in the microphone
    (double-talk: the canceller's suppression, not audio dropped)."""
    echoes = find_markers(mic.samples(), RATE, chirp(RATE, up=False)).positions / RATE
    if echoes.size == 0:
        return 0
    return sum(float(np.min(np.abs(echoes - at))) < CHIRP_S + 0.01 for at in missing_s)


def _send_stalls(packets: list[Packet], direction: Direction) -> list[Stall]:
    """Each gap longer than STALL_MS (benchmarks/_talk_causes.py) between two packets a sender put on the wire."""
    return gaps_over(np.asarray([p.at for p in packets if p.direction == direction]))


def _listed(stalls: list[Stall], origin: float) -> list[tuple[float, float]]:
    """(time from ``origin``, s; length, ms) of each stall."""
    return [(round(s.start - origin, 1), round(s.ms)) for s in stalls]


def reanalysed(kept: Path) -> dict[str, Any]:
    with kept.open("rb") as f:
        raw = pickle.load(f)  # our own file, written by --raw
    return analyse(raw["mic"], raw["spk"], raw["packets"])
