"""Figure 3 without pjsua2: the bridge alone, ours vs the baseline's thread-per-event, same process.

Ours: a plain ``threading.Thread`` stands in for pjsua's callback thread and posts through
:class:`daemon.bridge.EventChannel` into the running anyio loop; the round trip is the loop handing a
command to that thread through a queue and awaiting the reply it posts back (the engine's shape, minus
pjsua2). Baseline: the same stand-in thread starts ``threading.Thread(target=lambda:
asyncio.run(handler()))`` per event, as the replaced design did. Spacing the events (``--gap-ms``) keeps
one measurement from queueing behind the previous one.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import threading
import time
from typing import Any

import anyio

from benchmarks._proc import emit
from daemon.bridge import EventChannel, LoopBridge


async def ours(n: int, gap: float) -> dict[str, Any]:
    bridge = LoopBridge()
    channel: EventChannel[float] = EventChannel(bridge)
    commands: queue.Queue[float | None] = queue.Queue()
    replies: EventChannel[float] = EventChannel(bridge)

    def callback_thread() -> None:  # pjsua's worker thread, as far as the loop can tell
        for _ in range(n):
            channel.post(time.monotonic())
            time.sleep(gap)
        while (cmd := commands.get()) is not None:  # then the owner thread: run commands, post replies
            replies.post(cmd)

    thread = threading.Thread(target=callback_thread, name="stand-in-callbacks")
    thread.start()
    delivery: list[float] = []
    async with channel.receive:
        for _ in range(n):
            posted = await channel.receive.receive()
            delivery.append((time.monotonic() - posted) * 1000)
    round_trip: list[float] = []
    for _ in range(n):
        t = time.monotonic()
        commands.put(t)
        await replies.receive.receive()
        round_trip.append((time.monotonic() - t) * 1000)
        await anyio.sleep(gap)
    commands.put(None)
    while thread.is_alive():  # noqa: ASYNC110 - the loop never blocks on join()
        await anyio.sleep(0.001)
    bridge.close()
    return {"callback_to_handler_ms": delivery, "command_ms": round_trip, "lost": channel.lost + bridge.dropped}


def baseline(n: int, gap: float) -> dict[str, Any]:
    delivery: list[float] = []
    lock = threading.Lock()

    async def handler(posted: float) -> None:
        with lock:
            delivery.append((time.monotonic() - posted) * 1000)

    threads = []
    for _ in range(n):
        posted = time.monotonic()
        t = threading.Thread(target=lambda p=posted: asyncio.run(handler(p)))
        t.start()
        threads.append(t)
        time.sleep(gap)
    for t in threads:
        t.join()
    return {"callback_to_handler_ms": delivery, "lost": n - len(delivery)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--gap-ms", type=float, default=1.0)
    args = ap.parse_args()
    gap = args.gap_ms / 1000
    emit({"ours": anyio.run(ours, args.n, gap), "baseline": baseline(args.n, gap)})


if __name__ == "__main__":
    main()
