"""Figure 1's baseline: a press handled the DoorPi way (a model, NOT product code).

DoorPi's main loop ticks every 50 ms and polls its inputs; a detected press is an event on its bus, and
each event runs in a new thread. Combined with the replaced system's patch, that thread runs
``asyncio.run(handler())``, and the handler places the call with pjsua2 directly (after
``libRegisterThread``, without which pjlib aborts the process). Presses come at random phases against the
tick, as a visitor's would. The INVITE is stamped on arrival by the same UDP relay the app figure uses.
Prints one JSON line: ``python -m benchmarks.baseline_press --n N``.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import threading
import time
from typing import Any

import pjsua2 as pj

from benchmarks._pj import FarEnd, account_config, endpoint
from benchmarks._proc import emit
from benchmarks._wire import InviteStamperProcess as InviteStamper
from benchmarks.baseline_threaded import Bench, OldCall

# As app_bench's: INTERCOM_BENCH_PORT_OFFSET moves every port, for a run beside another one.
_OFFSET = int(os.environ.get("INTERCOM_BENCH_PORT_OFFSET", "0"))
SIP_PORT, RTP_PORT, FAR_PORT, FAR_RTP, RELAY_PORT = (p + _OFFSET for p in (15150, 27000, 15160, 28000, 15170))
TICK = 0.050  # DoorPi's main-loop period


def drive(ep: pj.Endpoint, acc: pj.Account, n: int) -> dict[str, Any]:
    stamper = InviteStamper(RELAY_PORT, FAR_PORT)
    stamper.start()
    bench = Bench(ep, "latency", 0.0)  # "latency": the answer handler hangs the call up at once
    pressed, stop = threading.Event(), threading.Event()
    calls: list[OldCall] = []

    async def on_press() -> None:  # the event handler, in its own thread and its own event loop
        call = OldCall(acc, bench)
        calls.append(call)
        call.makeCall(f"sip:101@127.0.0.1:{RELAY_PORT}", pj.CallOpParam(True))

    def main_loop() -> None:
        while not stop.is_set():
            if pressed.is_set():
                pressed.clear()
                bench.dispatch(on_press)
            time.sleep(TICK)

    ticker = threading.Thread(target=main_loop, name="doorpi-main-loop", daemon=True)
    ticker.start()
    edges: list[float] = []
    for i in range(n + 1):  # the first press is a warm-up
        time.sleep(random.uniform(0, TICK))
        edge = time.monotonic()
        pressed.set()
        deadline = edge + 10
        while len(calls) <= i and time.monotonic() < deadline:
            time.sleep(0.001)
        if len(calls) > i:
            calls[i].ended.wait(max(0.0, deadline - time.monotonic()))
        if i:
            edges.append(edge)
    stop.set()
    ticker.join()
    for t in bench.threads:
        t.join(5)
    invites = sorted(stamper.invites)
    latencies = []
    for edge in edges:
        after = [t for t in invites if t >= edge]
        if after:
            latencies.append((after[0] - edge) * 1000)
    for call in calls:  # a Call alive after libDestroy aborts the process
        if not call.ended.is_set():
            call.hangup(pj.CallOpParam())
    return {"n": n, "edge_to_invite_ms": latencies, "tick_ms": TICK * 1000}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    with FarEnd(FAR_PORT, "--rtp-port", str(FAR_RTP)) as far, endpoint(SIP_PORT, RTP_PORT, thread_cnt=1) as ep:
        acc = pj.Account()
        acc.create(account_config(f"sip:panel@127.0.0.1:{SIP_PORT}", RTP_PORT))
        ep.libRegisterThread("bench-main")
        result = drive(ep, acc, args.n)
        gc.collect()
        acc.shutdown()
    result["far_end"] = far.result
    emit(result)


if __name__ == "__main__":
    main()
