"""Where the talk-call benchmark listens: the paced card's sources with a clock, and RTP on the loopback wire.

* :class:`StampedRecorder`: ``parec`` of one PulseAudio source, raw, read here as it arrives; each read is
  stamped with ``time.monotonic()``. A sample cannot be read before the card hands it out, so the card time
  of sample ``n`` is ``start + n / RATE`` with ``start`` the lower envelope of ``stamp - samples_read / RATE``
  (taken per minute, so a slow drift between the card's clock and ours is followed).
* :class:`RtpSniffer`: an ``AF_PACKET`` socket on ``lo`` (root) sees every RTP packet between the panel and
  the phone, with the kernel's receive timestamp: the boundary between the panel and the network. Only
  packets to or from the phone's RTP ports are kept.

One thread each, for the recorder's or the sniffer's whole life (blocking reads), not per operation.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import struct
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from benchmarks._talk_signal import g711_decode

__all__ = [
    "Direction",
    "Packet",
    "Recording",
    "RtpSniffer",
    "StampedRecorder",
    "WireStream",
    "direction_of",
    "overlapping",
    "panel_rtp_ports",
    "wire_stream",
]

RATE = 16000
ENVELOPE_WINDOW_S = 60.0
CLOCK_WINDOW_S = 10.0  # media_clock_ppm's windows: long enough that each holds a packet no stall delayed
G711_RATE = 8000  # RTP timestamp units of the call's codec (PCMU / PCMA)
MAX_TIMESTAMP_STEP = 8000 * 10  # 10 s at 8 kHz: a larger step between two packets is the sender's discontinuity
ETH_P_IP = 0x0800
PACKET_HOST = 0  # the receive side of a loopback packet (each is also seen once as PACKET_OUTGOING)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)

Direction = Literal["to_phone", "from_phone"]


class StampedRecorder:
    """Record a PulseAudio ``source`` (16 kHz mono) with the time each chunk arrived."""

    def __init__(self, server: str, source: str) -> None:
        argv = ["parec", f"--device={source}", f"--rate={RATE}", "--channels=1", "--format=s16le", "--raw"]
        argv.append("--latency-msec=10")  # small reads: the envelope is as tight as the card's own blocks
        self._proc = subprocess.Popen(
            argv, env={**os.environ, "PULSE_SERVER": server}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self._data = bytearray()
        self._stamps: list[tuple[float, int]] = []
        self._thread = threading.Thread(target=self._read, name=f"rec-{source}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        stdout = self._proc.stdout
        assert stdout is not None
        fd = stdout.fileno()
        while chunk := os.read(fd, 4096):
            now = time.monotonic()
            self._data += chunk
            self._stamps.append((now, len(self._data) // 2))

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self._thread.join(timeout=5)

    def recording(self) -> Recording:
        """What was recorded (call after :meth:`stop`)."""
        return Recording(bytes(self._data[: len(self._data) // 2 * 2]), list(self._stamps))


@dataclass(frozen=True)
class Recording:
    """A card source's samples (16-bit little-endian) and, per read, (monotonic time, samples read so far)."""

    data: bytes
    stamps: list[tuple[float, int]]

    def samples(self) -> npt.NDArray[np.float64]:
        return np.frombuffer(self.data, dtype="<i2").astype(np.float64) / 32768.0

    def times_of(self, positions: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Monotonic time at which the card handed out each sample position (per-minute lower envelope)."""
        stamps = np.asarray(self.stamps, dtype=np.float64)
        starts = stamps[:, 0] - stamps[:, 1] / RATE
        window = (stamps[:, 1] / RATE // ENVELOPE_WINDOW_S).astype(int)
        envelope = {int(w): float(starts[window == w].min()) for w in np.unique(window)}
        keys = np.asarray(sorted(envelope))
        result = np.empty(len(positions))
        for i, pos in enumerate(positions):
            w = int(pos / RATE // ENVELOPE_WINDOW_S)
            nearest = int(keys[np.argmin(np.abs(keys - w))])
            result[i] = envelope[nearest] + pos / RATE
        return result

    def read_times(self) -> npt.NDArray[np.float64]:
        """When each read returned (monotonic)."""
        return np.asarray([s[0] for s in self.stamps], dtype=np.float64)

    def read_intervals_ms(self) -> list[float]:
        """Time between consecutive reads (the card's delivery blocks as the recorder saw them)."""
        t = np.asarray([s[0] for s in self.stamps])
        return [float(x) for x in np.diff(t) * 1000]


@dataclass(frozen=True)
class Packet:
    at: float  # monotonic, from the kernel's receive timestamp
    direction: Direction
    seq: int
    timestamp: int
    payload_type: int
    payload: bytes
    ssrc: int = 0


@dataclass
class RtpSniffer:
    """RTP (G.711) packets on ``lo`` between the phone's RTP ports and the panel's (other jobs on this machine
    send RTP on ``lo`` too: both ends must match). The two ranges must not overlap (:func:`direction_of`)."""

    ports: range
    panel_ports: range
    packets: list[Packet] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        if overlapping(self.ports, self.panel_ports):
            raise ValueError(f"the phone's RTP ports {self.ports} overlap the panel's {self.panel_ports}")
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._sock.bind(("lo", ETH_P_IP))
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, name="rtp-sniffer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, ancillary, _flags, address = self._sock.recvmsg(2048, 64)
            except TimeoutError:
                continue
            except OSError:
                return
            if address[2] != PACKET_HOST:
                continue
            mono_now, real_now = time.monotonic(), time.time()
            at = mono_now
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanoseconds = struct.unpack("qq", value[:16])
                    at = seconds + nanoseconds / 1e9 - (real_now - mono_now)
            if (packet := self._parse(data, at)) is not None:
                self.packets.append(packet)

    def _parse(self, data: bytes, at: float) -> Packet | None:
        if len(data) < 28 or data[9] != socket.IPPROTO_UDP:
            return None
        ihl = (data[0] & 0x0F) * 4
        source_port, dest_port = struct.unpack("!HH", data[ihl : ihl + 4])
        rtp = data[ihl + 8 :]
        if len(rtp) < 12 or rtp[0] >> 6 != 2 or (rtp[1] & 0x7F) not in (0, 8):
            return None  # not RTP, or RTCP, or a payload type other than G.711
        direction = direction_of(source_port, dest_port, self.ports, self.panel_ports)
        if direction is None:
            return None
        seq, timestamp, ssrc = struct.unpack("!HII", rtp[2:12])
        header = 12 + 4 * (rtp[0] & 0x0F)
        return Packet(at, direction, seq, timestamp, rtp[1] & 0x7F, rtp[header:], ssrc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self._sock.close()


def overlapping(a: range, b: range) -> bool:
    return max(a.start, b.start) < min(a.stop, b.stop)


def direction_of(source_port: int, dest_port: int, phone_ports: range, panel_ports: range) -> Direction | None:
    """Which way a packet between these ports went, or None for another stream. Only sound for ranges that do not
    overlap: with the phone's and the panel's ports each inside both ranges, every packet of the call matched
    "to_phone" first, the phone's stream (it sends more packets) was taken for the panel's and no chirp paired
    either way (a talk call once reported 0 / 0 chirps so)."""
    if dest_port in phone_ports and source_port in panel_ports:
        return "to_phone"
    if source_port in phone_ports and dest_port in panel_ports:
        return "from_phone"
    return None


PANEL_RTP_PORTS = 100  # the panel's [sip] rtp_port_range (its default)
PANEL_RTP_BASES = range(21000, 31000, 200)  # as the SIP tests choose theirs (tests/sip/conftest.py)


def panel_rtp_ports(phone_rtp: range, pick: int) -> range:
    """The panel's RTP ports: one of PANEL_RTP_BASES (``pick``, a free port, spreads concurrent runs) whose range
    does not overlap the phone's. Both come from ephemeral ports: in about 1 call in 100 the two ranges overlapped,
    and when each end's port then fell inside both, the sniffer could not tell the directions apart
    (:func:`direction_of`) and the call paired no chirp at all."""
    usable = [b for b in PANEL_RTP_BASES if not overlapping(range(b, b + PANEL_RTP_PORTS), phone_rtp)]
    base = usable[pick % len(usable)]
    return range(base, base + PANEL_RTP_PORTS)


@dataclass(frozen=True)
class WireStream:
    """One direction's audio as it crossed the wire: 8 kHz samples placed by RTP timestamp (gaps are silence),
    and for each sample the time its packet crossed."""

    samples: npt.NDArray[np.float64]
    packet_at: npt.NDArray[np.float64]  # NaN where no packet carried the sample
    packets: int
    rtp_gaps: int  # sequence numbers missing on the wire
    timestamp_jumps: int = 0  # RTP timestamp discontinuities of the sender (more than MAX_TIMESTAMP_STEP)
    foreign_packets: int = 0  # packets of another SSRC between the same ports (left out)
    clock_ppm: float | None = None  # the sender's media clock against the wire's (see media_clock_ppm)


def wire_stream(packets: list[Packet], direction: Direction) -> WireStream:
    chosen = [p for p in packets if p.direction == direction]
    if not chosen:
        return WireStream(np.zeros(0), np.zeros(0), 0, 0)
    # One sender per direction: its SSRC is the one most packets carry (any other is counted, not placed).
    ssrc = Counter(p.ssrc for p in chosen).most_common(1)[0][0]
    foreign = sum(p.ssrc != ssrc for p in chosen)
    chosen = [p for p in chosen if p.ssrc == ssrc]
    # Timestamps in arrival order, unwrapped by the signed difference to the previous packet: a packet that
    # arrives late (reordered) lands before its successor, not 2**32 samples on.
    extended, jumps = [chosen[0].timestamp], 0
    for before, after in itertools.pairwise(chosen):
        step = ((after.timestamp - before.timestamp + (1 << 31)) % (1 << 32)) - (1 << 31)
        if abs(step) > MAX_TIMESTAMP_STEP:  # the sender restarted its timestamps: place it by arrival time
            jumps += 1
            step = round((after.at - before.at) * 8000 / len(before.payload)) * len(before.payload)
        extended.append(extended[-1] + step)
    base = min(extended)
    offsets = [e - base for e in extended]
    length = max(o + len(p.payload) for o, p in zip(offsets, chosen, strict=True))
    samples, packet_at = np.zeros(length), np.full(length, np.nan)
    for o, p in zip(offsets, chosen, strict=True):
        samples[o : o + len(p.payload)] = g711_decode(p.payload, p.payload_type)
        packet_at[o : o + len(p.payload)] = p.at
    clock = media_clock_ppm(np.asarray([p.at for p in chosen]), np.asarray(extended, dtype=np.float64) / G711_RATE)
    gaps = _sequence_gaps([p.seq for p in chosen])
    return WireStream(samples, packet_at, len(chosen), gaps, jumps, foreign, clock)


def media_clock_ppm(at: npt.NDArray[np.float64], media_s: npt.NDArray[np.float64]) -> float | None:
    """How fast a sender's media clock ran against the wire's (monotonic) clock, in parts per million: the slope of
    ``media_s`` (its RTP timestamps, in seconds) over ``at`` (when each packet crossed). A sender clocked by its
    sound card (the panel: pjmedia's conference is driven by the card's playback) shows the card's rate here; a
    stall only delays packets, so the fit is on each CLOCK_WINDOW_S window's earliest packet against its media
    time (the lower envelope). None with fewer than three windows (a call too short to tell)."""
    if at.size == 0:
        return None
    late = at - media_s  # grows as the sender's clock falls behind the wire's
    window = ((media_s - media_s[0]) // CLOCK_WINDOW_S).astype(int)
    firsts = [int(in_w[np.argmin(late[in_w])]) for in_w in (np.flatnonzero(window == w) for w in np.unique(window))]
    if len(firsts) < 3:
        return None
    slope = np.polyfit(at[firsts], late[firsts], 1)[0]  # d(at - media)/d(at) = 1 - the media clock's rate
    return round(float(-slope) * 1e6, 1)


def _sequence_gaps(seqs: list[int]) -> int:
    """Sequence numbers never seen, in arrival order, across the 16-bit wrap."""
    extended, last = [seqs[0]], seqs[0]
    for seq in seqs[1:]:
        extended.append(extended[-1] + ((seq - last + 0x8000) % 0x10000) - 0x8000)
        last = seq
    return max(extended) - min(extended) + 1 - len(set(extended))
