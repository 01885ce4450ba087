"""Measure the SIP engine's latencies on loopback (prints; asserts nothing).

* loop -> owner -> loop command round trip (a no-op command), >= 2000 samples;
* owner -> loop event delivery (the path every pjsua2 callback's event takes), >= 1000 samples;
* INVITE -> answer with an auto-answering baresip, 30 calls.

Run: .venv/bin/python benchmarks/sip_latency.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.bridge import LoopBridge
from daemon.sip import CallAnswered, CallEnded, RegistrationChanged, SipEngine
from tests.sip.conftest import EventLog, make_config
from tests.support.peers import Baresip


def report(name: str, samples: list[float]) -> None:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[int(len(ms) * 0.99) - 1]
    print(f"{name:38s} n={len(ms):5d} median={statistics.median(ms):7.3f} ms  p99={p99:7.3f} ms")


async def main() -> None:
    async with SipEngine(make_config(), LoopBridge()) as engine:
        rtts = []
        for _ in range(2000):
            t = time.monotonic()
            await engine.ping()
            rtts.append(time.monotonic() - t)
        report("command round trip loop->owner->loop", rtts)
        deliveries = []
        for _ in range(1000):
            await engine._run("emit", lambda o: o._book.emit(RegistrationChanged(False, 0, "bench")))
            event = await engine.events.receive()
            deliveries.append(time.monotonic() - event.at)
        report("event owner -> loop consumer", deliveries)
    with tempfile.TemporaryDirectory() as tmp, Baresip(Path(tmp)) as phone:
        async with SipEngine(make_config(), LoopBridge()) as engine:
            log = EventLog(engine)
            answers = []
            for _ in range(30):
                t = time.monotonic()
                call = await engine.dial(phone.uri)
                answered = await log.wait(CallAnswered, call)
                answers.append(answered.at - t)
                await engine.hangup(call)
                await log.wait(CallEnded, call)
                await anyio.sleep(0.05)
            report("INVITE -> answered (baresip auto)", answers)
        print(f"libDestroy at exit: {engine.destroy_seconds * 1000:.1f} ms")


if __name__ == "__main__":
    anyio.run(main)
