"""Hand-made SIP requests, and a flood of them (INVITE, REGISTER...) sent from a separate process.

The flood runs in its own process (``python -m tests.support.sip_flood PORT COUNT GAP_MS METHOD``) so that the
sender's pacing and the daemon's owner thread do not share a GIL: sent from the test's own process, a
2 ms burst was smeared out by the interpreter and never reached the daemon as a burst.
"""

from __future__ import annotations

import json
import random
import re
import socket
import sys
import threading
import time
from collections import Counter

import anyio

__all__ = ["SDP", "FloodResult", "request", "run_flood"]

SDP = (
    "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 29000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
)

FloodResult = dict[str, object]  # {"sent", "seconds", "final": {status: count}, "unanswered", "kernel_drops"}


def request(
    method: str,
    target: str,
    port: int,
    lport: int,
    n: int,
    *,
    body: str = "",
    extra: str = "",
    content_length: str | None = None,
    caller: str = "mallory",
    max_forwards: str = "70",
    omit: tuple[str, ...] = (),
) -> bytes:
    """One SIP request as bytes, from ``caller`` at 127.0.0.1:``lport``; ``n`` makes its Call-ID/branch unique."""
    headers = {
        "Via": f"SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK-torture-{n}",
        "From": f"<sip:{caller}@127.0.0.1>;tag=t{n}",
        "To": f"<sip:portao@127.0.0.1:{port}>",
        "Call-ID": f"torture-{n}@127.0.0.1",
        "CSeq": f"1 {method}",
        "Contact": f"<sip:{caller}@127.0.0.1:{lport}>",
        "Max-Forwards": max_forwards,
    }
    if body:
        headers["Content-Type"] = "application/sdp" if body.startswith("v=0") else "application/dtmf-relay"
    text = "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k not in omit)
    length = str(len(body.encode())) if content_length is None else content_length
    return f"{method} {target} SIP/2.0\r\n{text}{extra}Content-Length: {length}\r\n\r\n{body}".encode()


def _ack(response: bytes, uri: str) -> bytes:
    """The ACK for a non-2xx final response: its Via, From, To (with the tag), Call-ID; same transaction."""
    head = response.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")[1:]
    keep = [line for line in head if line.split(":", 1)[0].strip().lower() in ("via", "from", "to", "call-id")]
    cseq = next(line for line in head if line.lower().startswith("cseq:")).split(":", 1)[1].split()[0]
    lines = [f"ACK {uri} SIP/2.0", *keep, f"CSeq: {cseq} ACK", "Max-Forwards: 70", "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def udp_receive_buffer_drops() -> int:
    """Datagrams the kernel dropped on this machine because a socket's receive buffer was full."""
    with open("/proc/net/snmp") as snmp:
        lines = [line.split() for line in snmp if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


def flood(port: int, count: int, gap_ms: float, method: str = "INVITE", settle: float = 3.0) -> FloodResult:
    """Send ``count`` requests (INVITEs carry SDP), each from a new caller, ``gap_ms`` apart; collect final
    answers (INVITE ones ACKed, or the daemon retransmits them) until ``settle`` s pass without a datagram."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        lport = sock.getsockname()[1]
        uri = f"sip:portao@127.0.0.1:{port}"
        body = SDP if method == "INVITE" else ""
        # Call-IDs and branches unique across floods: two floods at once reusing them would look like
        # retransmissions of each other's requests, and pjsip answers a retransmission only once.
        first = random.randrange(1_000_000, 2**40)
        messages = [request(method, uri, port, lport, first + i, body=body, caller=f"flood{i}") for i in range(count)]
        final: dict[bytes, bytes] = {}

        def receive() -> None:
            sock.settimeout(settle)
            while True:
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    return
                status = data.split(b"\r\n", 1)[0]
                found = re.search(rb"Call-ID: (\S+)", data)
                if found and not status.startswith(b"SIP/2.0 1"):
                    final[found.group(1)] = status
                    if method == "INVITE":
                        sock.sendto(_ack(data, uri), ("127.0.0.1", port))  # or it is retransmitted for 32 s

        receiver = threading.Thread(target=receive)
        drops_before = udp_receive_buffer_drops()
        receiver.start()
        started = time.monotonic()
        for message in messages:
            sock.sendto(message, ("127.0.0.1", port))
            if gap_ms:
                time.sleep(gap_ms / 1000)
        seconds = time.monotonic() - started
        receiver.join()
        drops = udp_receive_buffer_drops() - drops_before
    statuses = Counter(status.decode() for status in final.values())
    # A datagram the daemon never read (its socket buffer full while it was busy) is not answered; a real
    # client would retransmit it. Counted machine-wide, so an upper bound on this flood's share.
    return {
        "sent": count,
        "seconds": round(seconds, 3),
        "final": dict(statuses),
        "unanswered": count - len(final),
        "kernel_drops": drops,
    }


async def run_flood(port: int, count: int, gap_ms: float, method: str = "INVITE") -> FloodResult:
    """Run :func:`flood` in a child process and return its result."""
    result = await anyio.run_process(
        [sys.executable, "-m", "tests.support.sip_flood", str(port), str(count), str(gap_ms), method]
    )
    parsed: FloodResult = json.loads(result.stdout)
    return parsed


if __name__ == "__main__":
    print(json.dumps(flood(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])))
