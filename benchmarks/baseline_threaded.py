"""The design this daemon replaces, rebuilt faithfully as a baseline. NOT product code.

The old system hit "There is no current event loop in thread 'Dummy-1'" (pjsua2 calls back on its own
worker thread, which Python names 'Dummy-1', where asyncio has no loop) and patched it like this:

* pjsua2 runs with the default ``threadCnt = 1``, so callbacks arrive on 'Dummy-1';
* every callback starts ``threading.Thread(target=lambda: asyncio.run(handler(...)))``: a new thread and
  a new event loop per event (DoorPi's "a thread per event" bus has the same shape);
* a scheduled hang-up is ``asyncio.run(sleep(delay); call.hangup())`` in a thread of its own, holding the
  ``Call`` object: after the far end has hung up, pjsua reuses the call id and that ``hangup()`` lands
  on whichever call holds the id now.

The original called pjsua2 from those threads. pjlib aborts the process on a call from a thread it does
not know, so each thread here first calls ``libRegisterThread`` (pjsua2 keeps a descriptor per registered
thread for the life of the endpoint: part of the memory cost measured here).

Modes (each prints one JSON line): ``latency`` (figure 3), ``visits`` (figure 5), ``stress`` (wrong
hang-ups). Run as ``python -m benchmarks.baseline_threaded MODE --n N``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import threading
import time
from typing import Any

import pjsua2 as pj

from benchmarks._pj import FarEnd, account_config, endpoint
from benchmarks._proc import SAMPLE_EVERY, emit, footprint

SIP_PORT, RTP_PORT, FAR_PORT = 15060, 22000, 15070
_names = itertools.count()


def spawn(ep: pj.Endpoint, coro_fn: Any, *args: Any) -> threading.Thread:
    """The old pattern: a new thread, registered with pjlib, running its own ``asyncio.run``."""

    def body() -> None:
        ep.libRegisterThread(f"evt-{next(_names)}")
        asyncio.run(coro_fn(*args))

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t


class Bench:
    """Counters and the id -> live call registry used to detect a hang-up that hit another call."""

    def __init__(self, ep: pj.Endpoint, mode: str, hangup_delay: float) -> None:
        self.ep, self.mode, self.hangup_delay = ep, mode, hangup_delay
        self.live: dict[int, OldCall] = {}
        self.lock = threading.Lock()
        self.callback_to_handler_ms: list[float] = []
        self.command_ms: list[float] = []
        self.events_posted = self.events_handled = 0
        self.wrong_hangups = self.stale_hangups = 0
        self.threads: list[threading.Thread] = []
        self.handler_threads = set[str]()

    def dispatch(self, coro_fn: Any, *args: Any) -> None:
        with self.lock:
            self.events_posted += 1
            if len(self.threads) >= 64:
                # Finished threads forgotten, so figure 5 counts the design's memory and not this harness's.
                self.threads = [t for t in self.threads if t.is_alive()]
            self.threads.append(spawn(self.ep, coro_fn, *args))


class OldCall(pj.Call):  # type: ignore[misc]  # untyped library
    def __init__(self, acc: pj.Account, bench: Bench) -> None:
        super().__init__(acc)
        self.bench = bench
        self.call_id = -1
        self.ended = threading.Event()
        self.confirmed = threading.Event()

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        ci = self.getInfo()
        t0 = time.monotonic()
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed.set()
            self.bench.dispatch(on_answered, self, t0)
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            with self.bench.lock:
                if self.bench.live.get(self.call_id) is self:
                    del self.bench.live[self.call_id]
            self.ended.set()
            self.bench.dispatch(on_ended, self, t0)


async def on_answered(call: OldCall, posted_at: float) -> None:
    bench = call.bench
    ran_at = time.monotonic()
    with bench.lock:
        bench.events_handled += 1
        bench.callback_to_handler_ms.append((ran_at - posted_at) * 1000)
        bench.handler_threads.add(threading.current_thread().name)
    if bench.mode == "latency":
        # The "loop -> pjsua2 command" of this design: the handler calls pjsua2 directly.
        t = time.monotonic()
        with contextlib.suppress(pj.Error):
            call.hangup(pj.CallOpParam())
        bench.command_ms.append((time.monotonic() - t) * 1000)
    else:
        bench.dispatch(scheduled_hangup, call, bench.hangup_delay)


async def scheduled_hangup(call: OldCall, delay: float) -> None:
    await asyncio.sleep(delay)
    bench = call.bench
    with bench.lock:
        bench.events_handled += 1
        holder = bench.live.get(call.call_id)
        if call.ended.is_set():
            bench.stale_hangups += 1
            if holder is not None and holder is not call:
                bench.wrong_hangups += 1  # the id now belongs to another call: this hangs *it* up
    with contextlib.suppress(pj.Error):  # PJSIP_ESESSIONTERMINATED etc.: the id was free
        call.hangup(pj.CallOpParam())


async def on_ended(call: OldCall, posted_at: float) -> None:
    with call.bench.lock:
        call.bench.events_handled += 1


def place(acc: pj.Account, bench: Bench) -> OldCall | None:
    call = OldCall(acc, bench)
    try:
        call.makeCall(f"sip:phone@127.0.0.1:{FAR_PORT}", pj.CallOpParam(True))
    except pj.Error:
        return None
    with bench.lock:
        call.call_id = call.getId()
        bench.live[call.call_id] = call
    return call


class Sampler(threading.Thread):
    """Samples the kernel's thread count every 5 ms: the per-event threads are short-lived."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, footprint()["threads"] - 1)  # not counting this sampler


def run(args: argparse.Namespace) -> dict[str, Any]:
    far_args = ["--hangup-min", str(args.far_min), "--hangup-max", str(args.far_max)]
    result: dict[str, Any] = {"design": "baseline: thread + asyncio.run per event", "mode": args.mode}
    with FarEnd(FAR_PORT, *far_args) as far, endpoint(SIP_PORT, RTP_PORT, thread_cnt=1) as ep:
        acc = pj.Account()
        acc.create(account_config(f"sip:panel@127.0.0.1:{SIP_PORT}", RTP_PORT))
        ep.libRegisterThread("bench-main")
        # Every Call must be gone before libDestroy (one still alive aborts the process), so all the
        # calls live in drive()'s frame and die with it.
        result |= drive(ep, acc, args)
        gc.collect()
        acc.shutdown()
    result["far_end"] = far.result
    return result


def drive(ep: pj.Endpoint, acc: pj.Account, args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(ep, args.mode, args.hangup_delay)
    # Warm-up: the first call allocates pools, so "before" is taken after it. Its handler hangs it up
    # at once (latency mode), so no scheduled hang-up of it is left to interfere with the run.
    bench.mode = "latency"
    warm = place(acc, bench)
    if warm:
        warm.ended.wait(5)
    for t in bench.threads:
        t.join(5)
    bench.mode = args.mode
    bench.callback_to_handler_ms.clear()
    bench.command_ms.clear()
    bench.events_posted = bench.events_handled = 0
    time.sleep(0.3)
    gc.collect()
    before = footprint()
    sampler = Sampler()
    sampler.start()
    started = time.monotonic()
    calls: list[OldCall] = []
    failed = 0
    rss_series: list[tuple[int, int]] = [(0, before["rss_kb"])]
    for i in range(args.n):
        if i and i % SAMPLE_EVERY == 0:
            gc.collect()
            rss_series.append((i, footprint()["rss_kb"]))
        call = place(acc, bench)
        if call is None:
            failed += 1
            time.sleep(args.spacing)
            continue
        calls.append(call)
        if args.mode == "stress":
            time.sleep(args.spacing)  # overlapping calls: pjsua reuses ids as they free up
        elif not call.ended.wait(10):
            failed += 1
        elif args.mode == "latency":
            time.sleep(args.gap)
        if args.mode == "visits" and i % 50 == 0:
            calls = [c for c in calls if not c.ended.is_set()]
    deadline = time.monotonic() + args.hangup_delay + 3
    for c in calls:
        c.ended.wait(max(0.0, deadline - time.monotonic()))
    for t in bench.threads:
        t.join(max(0.0, deadline - time.monotonic()))
    elapsed = time.monotonic() - started
    sampler.stop.set()
    sampler.join()
    time.sleep(0.3)
    gc.collect()
    after = footprint()
    rss_series.append((args.n, after["rss_kb"]))
    for c in calls:
        if not c.ended.is_set():
            c.hangup(pj.CallOpParam())
    return {
        "n": args.n,
        "failed_calls": failed,
        "seconds": elapsed,
        "before": before,
        "after": after,
        "rss_series": rss_series,
        "peak_threads": sampler.peak,
        "events_posted": bench.events_posted,
        "events_handled": bench.events_handled,
        "lost_events": bench.events_posted - bench.events_handled,
        "stale_hangups": bench.stale_hangups,
        "wrong_hangups": bench.wrong_hangups,
        "callback_to_handler_ms": bench.callback_to_handler_ms,
        "command_ms": bench.command_ms,
        "distinct_handler_threads": len(bench.handler_threads),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["latency", "visits", "stress"])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument(
        "--gap",
        type=float,
        default=0.025,
        help="latency: pause between calls (back-to-back calls exhaust pjlib's select ioqueue)",
    )
    ap.add_argument("--spacing", type=float, default=0.3, help="stress: seconds between call starts")
    ap.add_argument("--hangup-delay", type=float, default=0.05, help="scheduled hang-up after answer")
    ap.add_argument("--far-min", type=float, default=0.0)
    ap.add_argument("--far-max", type=float, default=0.0, help="far end hangs up in [min, max] s; 0: never")
    emit(run(ap.parse_args()))


if __name__ == "__main__":
    main()
