"""pjmedia's delay buffer and jitter buffer driven directly, through ctypes on the loaded pjsua2 build's library.

The extension module links pjlib and pjmedia statically and exports their C functions, so a test can run the
same buffers a call runs (with the build's patches and config_site.h settings) on a schedule it controls: no
card, no call, no clock but the schedule's. Run in a child process (``python -m tests.systemd._pj_buffers
SCENARIO``, one JSON line on stdout): it initialises pjlib and takes over its log, which must not happen in a
process where pjsua2 runs.

The schedule is what pjmedia's ALSA threads do: a producer and a consumer, each one 20 ms frame per period on
its own clock, each op late by its scheduling delay and never before the previous one (a late thread catches
up in a burst).
"""

from __future__ import annotations

import ctypes
import importlib.util
import itertools
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass

RATE = 16000
FRAME = 320  # the conference's 20 ms at 16 kHz
RAMP = 30000  # sample k of the producer carries k % RAMP (1.9 s at 16 kHz: more than any delay)
SHED_MAX = 8  # delaybuf-drift-only.patch's DRIFT_SHED_MAX: the most a resampled frame takes beyond its own
DELAY_BUF_MAX_MS = 160  # the conference's master port: PJMEDIA_SOUND_BUFFER_COUNT (8) frames
JB_RATE = 8000
JB_FRAME_MS = 10  # G.711's frame in the jitter buffer; a 20 ms packet is two
JB_MAX_FRAMES = 50  # stream.c: 500 ms
JB_DISCARD_STATIC = 1  # pjmedia_jb_discard_algo
JB_NORMAL = 1  # pjmedia_jb_frame_type

LogFunc = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)


class PjStr(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_char_p), ("slen", ctypes.c_ssize_t)]


@dataclass(frozen=True)
class Outcome:
    """What came out of the buffer after the first ``settle_s`` seconds (the start's underflows excluded)."""

    dropped: int  # steps back in delay: audio cut from the stream (frames skipped, a WSOLA discard's blend)
    inserted: int  # steps forward: audio the buffer made up (an underflow's generated frame, an empty GET)
    compressed: int  # frames resampled from a few samples more than a frame (gradual shedding: no step)
    compressed_samples: int  # the samples they shed in all
    delay_ms_last: float  # the producer's audio in flight at the last GET
    delay_ms_max: float
    log: list[str]  # the buffer's own level-4 log lines about shedding ("Drift: ...", "Buffer size adjusted", ...)


def _library() -> ctypes.CDLL:
    spec = importlib.util.find_spec("_pjsua2")
    if spec is None or spec.origin is None:
        raise SystemExit("no pjsua2 build on sys.path")
    return ctypes.CDLL(spec.origin)


def _schedule(
    seconds: float, period_ms: float, offset_ms: float, rng: random.Random, stall_at_s: float, late_ms: float
) -> Iterator[float]:
    """When each op of one thread runs: on its period, late by a few ms, up to ``late_ms`` now and then, and
    once by 80 ms at ``stall_at_s`` (the worst burst comes first, as in a call's first seconds)."""
    previous = 0.0
    for k in range(int(seconds * 1000 / period_ms)):
        due = offset_ms + k * period_ms
        delay = rng.uniform(0, 3) + (rng.uniform(0, late_ms) if rng.random() < 0.05 else 0.0)
        if abs(due - stall_at_s * 1000) < period_ms / 2:
            delay = 80.0
        previous = max(previous, due + delay)
        yield previous


def _ops(
    seconds: float, producer_ppm: float, seed: int, period_ms: float, gets_per_period: int = 1
) -> list[tuple[float, int]]:
    """Both threads' ops in time order: (time ms, 0 put / 1 get); the consumer may take several per period."""
    producer = _schedule(seconds, period_ms * (1 - producer_ppm * 1e-6), 0.0, random.Random(seed), 1.0, 50.0)
    consumer = _schedule(seconds, period_ms, period_ms / 2, random.Random(seed + 1), 1.5, 50.0)
    return sorted([(t, 0) for t in producer] + [(t, 1) for t in consumer for _ in range(gets_per_period)])


class _Pj:
    def __init__(self) -> None:
        self.lib = _library()
        self.lines: list[str] = []
        self._log = LogFunc(self._collect)  # kept: pjlib holds only the pointer
        self.lib.pj_log_set_log_func(self._log)
        self.lib.pj_log_set_level(4)
        if self.lib.pj_init() != 0:
            raise SystemExit("pj_init failed")
        self._caching_pool = ctypes.create_string_buffer(1 << 16)  # pj_caching_pool: its factory comes first
        self.lib.pj_caching_pool_init(self._caching_pool, None, 0)
        self.lib.pj_pool_create.restype = ctypes.c_void_p
        self.pool = ctypes.c_void_p(self.lib.pj_pool_create(self._caching_pool, b"probe", 4000, 4000, None))

    def _collect(self, level: int, data: bytes, length: int) -> None:
        self.lines.append(data[:length].decode(errors="replace").strip())


def delay_buffer(seconds: float, producer_ppm: float, seed: int, settle_s: float = 5.0) -> Outcome:
    """The conference's master port: the capture thread puts, the playback thread gets. Every sample carries its
    index (a ramp modulo :data:`RAMP`), so whatever the buffer did shows in the samples that come out."""
    pj = _Pj()
    buf = ctypes.c_void_p()
    status = pj.lib.pjmedia_delay_buf_create(
        pj.pool, b"Master/sound", RATE, FRAME, 1, DELAY_BUF_MAX_MS, 0, ctypes.byref(buf)
    )
    if status != 0:
        raise SystemExit(f"pjmedia_delay_buf_create: {status}")
    frame = (ctypes.c_int16 * FRAME)()
    put = 0  # samples put so far
    last = None  # the index of the last sample out (unwrapped)
    dropped = inserted = compressed = compressed_samples = 0
    delays: list[float] = []
    for t, op in _ops(seconds, producer_ppm, seed, FRAME * 1000 / RATE):
        if op == 0:
            for i in range(FRAME):
                frame[i] = (put + i) % RAMP
            put += FRAME
            pj.lib.pjmedia_delay_buf_put(buf, frame)
            continue
        pj.lib.pjmedia_delay_buf_get(buf, frame)
        out = list(frame)
        steps = [(b - a) % RAMP for a, b in itertools.pairwise(out)]
        if last is None:
            last = put - ((put - out[-1]) % RAMP)
            continue
        end = last + FRAME + _signed((out[-1] - (last + FRAME)) % RAMP)
        extra = end - (last + FRAME)
        # A frame resampled from FRAME + extra samples: the ramp climbs by 1 or 2 per sample (an interpolation
        # across the ramp's wrap may spoil the two steps around one sample); a WSOLA blend steps anywhere.
        smooth = 0 < extra <= SHED_MAX and sum(step not in (1, 2) for step in steps) <= 2
        if t >= settle_s * 1000 and smooth:
            compressed += 1
            compressed_samples += extra
        elif t >= settle_s * 1000 and (extra != 0 or any(step != 1 for step in steps)):
            dropped += extra > 0
            inserted += extra <= 0
        last = end
        if t >= settle_s * 1000:
            delays.append((put - 1 - last) * 1000 / RATE)
    pj.lib.pjmedia_delay_buf_destroy(buf)
    words = ("Drift", "adjusted", "Dropping")
    return _outcome(dropped, inserted, delays, pj.lines, words, compressed, compressed_samples)


def _signed(step: int) -> int:
    return step - RAMP if step > RAMP // 2 else step


def jitter_buffer(seconds: float, producer_ppm: float, seed: int, settle_s: float = 5.0) -> Outcome:
    """A stream's jitter buffer with the static discard: 20 ms packets (two 10 ms frames) put, 10 ms gets."""
    pj = _Pj()
    jb = ctypes.c_void_p()
    name = PjStr(b"jb", 2)
    size = JB_RATE * JB_FRAME_MS // 1000 * 2
    status = pj.lib.pjmedia_jbuf_create(pj.pool, ctypes.byref(name), size, JB_FRAME_MS, JB_MAX_FRAMES, ctypes.byref(jb))
    if status != 0:
        raise SystemExit(f"pjmedia_jbuf_create: {status}")
    pj.lib.pjmedia_jbuf_set_adaptive(jb, 0, 1, JB_MAX_FRAMES * 4 // 5)  # stream.c with pjsua's defaults
    pj.lib.pjmedia_jbuf_set_discard(jb, JB_DISCARD_STATIC)
    frame = ctypes.create_string_buffer(size)
    kind = ctypes.c_char()
    seq = 0
    expected = None
    in_gap = False
    dropped = inserted = 0
    delays: list[float] = []
    # the conference's clock asks the stream for 10 ms twice per 20 ms tick
    for t, op in _ops(seconds, producer_ppm, seed, 2 * JB_FRAME_MS, gets_per_period=2):
        if op == 0:
            for _ in range(2):
                seq += 1
                frame.raw = seq.to_bytes(4, "little") * (size // 4)
                pj.lib.pjmedia_jbuf_put_frame(jb, frame, size, seq)
            continue
        pj.lib.pjmedia_jbuf_get_frame(jb, frame, ctypes.byref(kind))
        settled = t >= settle_s * 1000
        if kind.value[0] == JB_NORMAL:
            got = int.from_bytes(frame.raw[:4], "little")
            if settled and expected is not None:
                dropped += got > expected
            expected = got + 1
            if settled:
                delays.append((seq - got) * JB_FRAME_MS)
            in_gap = False
        elif settled:
            inserted += not in_gap  # one step however many GETs the gap lasts
            in_gap = True
    pj.lib.pjmedia_jbuf_destroy(jb)
    return _outcome(dropped, inserted, delays, pj.lines, ("Drift", "shrinking"))


def _outcome(
    dropped: int,
    inserted: int,
    delays: list[float],
    lines: list[str],
    words: tuple[str, ...],
    compressed: int = 0,
    compressed_samples: int = 0,
) -> Outcome:
    return Outcome(
        dropped=dropped,
        inserted=inserted,
        compressed=compressed,
        compressed_samples=compressed_samples,
        delay_ms_last=delays[-1] if delays else float("nan"),
        delay_ms_max=max(delays, default=float("nan")),
        log=[line for line in lines if any(word in line for word in words)],
    )


SCENARIOS = {"delay_buffer": delay_buffer, "jitter_buffer": jitter_buffer}

if __name__ == "__main__":
    scenario, seconds, ppm, seed = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(asdict(SCENARIOS[scenario](seconds, ppm, seed))))
