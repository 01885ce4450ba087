"""UDP echo and probe, run inside the netlab's namespaces: ``serve PORT`` or ``probe HOST PORT COUNT GAP_MS``.

``probe`` prints one JSON line: how many answers came back, in what order, and their round-trip times (ms).
"""

from __future__ import annotations

import json
import socket
import sys
import time


def serve(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", port))
        print("ready", flush=True)
        while True:
            data, peer = s.recvfrom(2048)
            s.sendto(data, peer)


def probe(host: str, port: int, count: int, gap_ms: float, wait: float = 1.5) -> None:
    sent: dict[int, float] = {}
    order: list[int] = []
    rtts: list[float] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(gap_ms / 1000)
        for seq in range(count):
            sent[seq] = time.monotonic()
            s.sendto(seq.to_bytes(4, "big") + b"x" * 160, (host, port))  # an RTP-sized payload
            _drain(s, sent, order, rtts, time.monotonic() + gap_ms / 1000)
        _drain(s, sent, order, rtts, time.monotonic() + wait)
    print(json.dumps({"answered": len(order), "order": order, "rtt_ms": rtts}), flush=True)


def _drain(s: socket.socket, sent: dict[int, float], order: list[int], rtts: list[float], until: float) -> None:
    while (left := until - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            data, _ = s.recvfrom(2048)
        except TimeoutError:
            return
        seq = int.from_bytes(data[:4], "big")
        order.append(seq)
        rtts.append(round((time.monotonic() - sent[seq]) * 1000, 2))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        probe(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
