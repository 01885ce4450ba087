"""Our design under the same load as :mod:`benchmarks.baseline_threaded`: the real ``daemon.sip`` engine.

One anyio loop; pjsua2 runs on the engine's single owner thread; events arrive through the LoopBridge.
The same modes as the baseline, against the same far end (:mod:`benchmarks.far_end`):

* ``latency`` (figure 3): owner thread saw the callback (``event.at``) -> our handler runs in the loop;
  loop -> owner -> loop round trip for a no-op (``ping``) and for the hang-up the baseline also times.
* ``visits`` (figure 5): consecutive calls, each hung up by a scheduled task; threads, fds, RSS.
* ``stress``: overlapping calls, each with a scheduled hang-up after the far end hung up at random earlier
  times. Handles are never reused, so a late hang-up raises CallGoneError instead of hitting another call.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup

from benchmarks._pj import FarEnd
from benchmarks._proc import SAMPLE_EVERY, emit, footprint
from daemon.bridge import LoopBridge
from daemon.config import SipAccountConfig, SipConfig
from daemon.errors import CallGoneError, SipError
from daemon.sip import CallAnswered, CallEnded, CallHandle, SipEngine

SIP_PORT, RTP_PORT, FAR_PORT = 15080, 23000, 15090


@dataclass
class Leg:
    answered: anyio.Event = field(default_factory=anyio.Event)
    ended: anyio.Event = field(default_factory=anyio.Event)


class Bench:
    def __init__(self, engine: SipEngine, tg: TaskGroup, args: argparse.Namespace) -> None:
        self.engine, self.tg, self.args = engine, tg, args
        self.legs: dict[CallHandle, Leg] = {}  # calls not yet ended
        self.placed = 0
        self.callback_to_handler_ms: list[float] = []
        self.command_ms: list[float] = []
        self.ping_ms: list[float] = []
        self.events = self.unrouted = self.stale_hangups = self.late_hangup_errors = 0
        self.peak_threads = 0
        self.dial_errors: list[str] = []

    async def consume(self) -> None:
        async for event in self.engine.events:
            ran_at = time.monotonic()
            handle = getattr(event, "handle", None)
            if not isinstance(event, CallAnswered | CallEnded):
                continue
            self.events += 1
            leg = self.legs.get(handle)  # type: ignore[arg-type]
            if leg is None:
                self.unrouted += 1
                continue
            if isinstance(event, CallAnswered):
                self.callback_to_handler_ms.append((ran_at - event.at) * 1000)
                leg.answered.set()
                if self.args.mode != "latency":
                    self.tg.start_soon(self.scheduled_hangup, event.handle, leg)
            else:
                # Forgotten once over, so the figure counts the engine's memory and not this harness's.
                del self.legs[event.handle]
                leg.ended.set()

    async def scheduled_hangup(self, handle: CallHandle, leg: Leg) -> None:
        await anyio.sleep(self.args.hangup_delay)
        if leg.ended.is_set():
            self.stale_hangups += 1
        try:
            await self.engine.hangup(handle)
        except CallGoneError:
            pass  # the call is over; the handle names it and no other, so nothing else is touched
        except SipError:
            self.late_hangup_errors += 1

    async def sample_threads(self) -> None:
        while True:
            self.peak_threads = max(self.peak_threads, footprint()["threads"])
            await anyio.sleep(0.005)

    async def call(self) -> tuple[CallHandle, Leg] | None:
        try:
            handle = await self.engine.dial(f"sip:phone@127.0.0.1:{FAR_PORT}")
        except SipError as exc:
            self.dial_errors.append(str(exc))
            return None
        leg = self.legs.setdefault(handle, Leg())
        self.placed += 1
        return handle, leg


async def one_latency_call(bench: Bench) -> bool:
    placed = await bench.call()
    if placed is None:
        return False
    handle, leg = placed
    with anyio.move_on_after(10):
        await leg.answered.wait()
        t = time.monotonic()
        await bench.engine.ping()
        bench.ping_ms.append((time.monotonic() - t) * 1000)
        t = time.monotonic()
        with contextlib.suppress(SipError):
            await bench.engine.hangup(handle)
        bench.command_ms.append((time.monotonic() - t) * 1000)
        await leg.ended.wait()
        return True
    return False


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    bridge = LoopBridge()
    config = SipConfig(
        bind_address="127.0.0.1",
        port=SIP_PORT,
        rtp_port=RTP_PORT,
        account=SipAccountConfig(uri=f"sip:panel@127.0.0.1:{SIP_PORT}"),
    )
    async with SipEngine(config, bridge) as engine, anyio.create_task_group() as tg:
        bench = Bench(engine, tg, args)
        tg.start_soon(bench.consume)
        # Warm-up: the first call allocates pools, so "before" is taken after it; hung up by us at once.
        saved_mode, args.mode = args.mode, "latency"
        await one_latency_call(bench)
        args.mode = saved_mode
        bench.ping_ms.clear()
        bench.command_ms.clear()
        await anyio.sleep(0.3)
        gc.collect()
        before = footprint()
        bench.callback_to_handler_ms.clear()
        bench.events = 0
        tg.start_soon(bench.sample_threads)
        started = time.monotonic()
        failed = 0
        rss_series: list[tuple[int, int]] = [(0, before["rss_kb"])]
        for i in range(args.n):
            if i and i % SAMPLE_EVERY == 0:
                gc.collect()
                rss_series.append((i, footprint()["rss_kb"]))
            if args.mode == "latency":
                failed += not await one_latency_call(bench)
                await anyio.sleep(args.gap)
                continue
            placed = await bench.call()
            if placed is None:
                failed += 1
                await anyio.sleep(args.spacing)
            elif args.mode == "stress":
                await anyio.sleep(args.spacing)
            else:
                with anyio.move_on_after(10) as scope:
                    await placed[1].ended.wait()
                failed += scope.cancelled_caught
        with anyio.move_on_after(args.hangup_delay + 3):
            for leg in list(bench.legs.values()):
                await leg.ended.wait()
        elapsed = time.monotonic() - started
        await anyio.sleep(args.hangup_delay + 0.3)  # let the last scheduled hang-ups run
        gc.collect()
        after = footprint()
        rss_series.append((args.n, after["rss_kb"]))
        expected = 2 * (bench.placed - 1)  # answered + ended per measured call
        tg.cancel_scope.cancel()
    return {
        "design": "ours: owner thread + LoopBridge",
        "mode": args.mode,
        "n": args.n,
        "failed_calls": failed,
        "seconds": elapsed,
        "before": before,
        "after": after,
        "rss_series": rss_series,
        "peak_threads": bench.peak_threads,
        "events_expected": expected,
        "events_handled": bench.events,
        "lost_events": expected - bench.events,
        "misrouted_events": bench.unrouted,
        "stale_hangups": bench.stale_hangups,
        "wrong_hangups": 0 if not bench.late_hangup_errors else -1,  # in-process: handles cannot alias
        "callback_to_handler_ms": bench.callback_to_handler_ms,
        "command_ms": bench.command_ms,
        "ping_ms": bench.ping_ms,
        "fault_counters": list(engine.fault_counters),
        "dial_errors": sorted(set(bench.dial_errors))[:5],
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
    ap.add_argument("--spacing", type=float, default=0.3)
    ap.add_argument("--hangup-delay", type=float, default=0.05)
    ap.add_argument("--far-min", type=float, default=0.0)
    ap.add_argument("--far-max", type=float, default=0.0)
    args = ap.parse_args()
    with FarEnd(
        FAR_PORT, "--hangup-min", str(args.far_min), "--hangup-max", str(args.far_max), "--rtp-port", "24000"
    ) as far:
        result = anyio.run(drive, args)
    result["far_end"] = far.result
    emit(result)


if __name__ == "__main__":
    main()
