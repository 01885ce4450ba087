"""A link with loss, jitter, reordering and outages, for a kernel without ``netem``.

Run inside the "wan" network namespace of :mod:`tests.support.netlab`: it bridges two veth ends at layer 2 in
user space (AF_PACKET), so every frame between the panel's namespace and the PBX's (ARP, SIP, RTP) crosses it,
and each IPv4 frame can be dropped, delayed or reordered. Non-IP frames (ARP) pass untouched, so an impaired link
still resolves addresses, as a lossy radio link does. Decisions come from a seeded RNG per direction: the same
seed and the same traffic give the same drops.

Controlled by lines on stdin, answered on stdout::

    set loss=0.05 jitter_ms=100 delay_ms=0 reorder=0.0 seed=7   -> ok
    outage on | outage off                                        -> ok
    stats                                                         -> {"a>b": {...}, "b>a": {...}}
    quit
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import os
import random
import selectors
import socket
import sys
import time
from dataclasses import asdict, dataclass, field

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
IPV4 = b"\x08\x00"


@dataclass
class Impairment:
    loss: float = 0.0  # probability a frame is dropped
    delay_ms: float = 0.0  # fixed one-way delay
    jitter_ms: float = 0.0  # extra delay, uniform 0..jitter: frames overtake each other
    reorder: float = 0.0  # probability a frame is held back an extra jitter_ms (more reordering)
    outage: bool = False  # drop everything (IPv4 and ARP alike: the link is gone)


@dataclass
class Counters:
    passed: int = 0
    dropped: int = 0
    delayed: int = 0


@dataclass
class Direction:
    name: str
    rx: socket.socket
    tx: socket.socket
    rng: random.Random
    counters: Counters = field(default_factory=Counters)


def _open(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, 0))
    sock.setblocking(False)
    return sock


def main(a_if: str, b_if: str, seed: int = 1) -> None:
    a, b = _open(a_if), _open(b_if)
    impairment = Impairment()
    directions = [Direction("a>b", a, b, random.Random(seed)), Direction("b>a", b, a, random.Random(seed + 1))]
    queue: list[tuple[float, int, socket.socket, bytes]] = []
    order = itertools.count()
    sel = selectors.DefaultSelector()
    for d in directions:
        sel.register(d.rx, selectors.EVENT_READ, d)
    sel.register(sys.stdin, selectors.EVENT_READ, None)
    os.set_blocking(sys.stdin.fileno(), True)
    print("ready", flush=True)
    while True:
        timeout = None if not queue else max(0.0, queue[0][0] - time.monotonic())
        for key, _ in sel.select(timeout):
            if key.data is None:
                line = sys.stdin.readline()
                if not line or line.strip() == "quit":
                    return
                print(_control(line.split(), impairment, directions), flush=True)
                continue
            side: Direction = key.data
            while True:
                try:
                    frame, address = side.rx.recvfrom(65535)
                except BlockingIOError:
                    break
                if address[2] == PACKET_OUTGOING:
                    continue  # our own transmission on this end
                _forward(frame, side, impairment, queue, order)
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, tx, frame = heapq.heappop(queue)
            _send(tx, frame)


def _forward(
    frame: bytes,
    d: Direction,
    imp: Impairment,
    queue: list[tuple[float, int, socket.socket, bytes]],
    order: itertools.count[int],
) -> None:
    if imp.outage:
        d.counters.dropped += 1
        return
    if frame[12:14] != IPV4:
        _send(d.tx, frame)
        return
    if imp.loss and d.rng.random() < imp.loss:
        d.counters.dropped += 1
        return
    delay = imp.delay_ms + (d.rng.uniform(0, imp.jitter_ms) if imp.jitter_ms else 0.0)
    if imp.reorder and d.rng.random() < imp.reorder:
        delay += max(imp.jitter_ms, 20.0)
    d.counters.passed += 1
    if delay <= 0:
        _send(d.tx, frame)
        return
    d.counters.delayed += 1
    heapq.heappush(queue, (time.monotonic() + delay / 1000, next(order), d.tx, frame))


def _send(tx: socket.socket, frame: bytes) -> None:
    with contextlib.suppress(OSError):  # a full or downed link loses the frame, as a real one would
        tx.send(frame)


def _control(words: list[str], imp: Impairment, directions: list[Direction]) -> str:
    match words:
        case ["set", *pairs]:
            for pair in pairs:
                name, _, value = pair.partition("=")
                if name == "seed":
                    for i, d in enumerate(directions):
                        d.rng.seed(int(value) + i)
                elif name in ("loss", "delay_ms", "jitter_ms", "reorder"):
                    setattr(imp, name, float(value))
                else:
                    return f"error: unknown setting {name!r}"
            return "ok"
        case ["outage", state] if state in ("on", "off"):
            imp.outage = state == "on"
            return "ok"
        case ["stats"]:
            return json.dumps({d.name: asdict(d.counters) for d in directions})
    return f"error: {' '.join(words)!r}"


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
