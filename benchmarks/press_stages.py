"""Where the time and the CPU go between a qualified press and its INVITE on the wire (issue 18, figure 9b).

Runs figure 1's harness (:mod:`benchmarks.app_bench`, the whole app in one process) with stamps wrapped
around the press path's stages, from outside the product code: each stamp is (stage, ``time.monotonic()``,
``time.process_time()``), so a stage's row says how late it ran after the qualifying moment (wall) and how
much CPU the whole process had spent by then (every thread: the dispatcher, the outbox, the loop, the SIP
owner, the history and event-log writers, PortAudio). The INVITE is stamped by the harness's relay as it
arrives, as in figure 1.

    python -m benchmarks.press_stages [--presses 20]   (prints the per-stage table; --emit: one JSON line)
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["ROW_ORDER", "STAGES", "install", "stage_rows"]

# The stages in path order: (key, what it is, the class path and method whose entry is stamped).
STAGES: tuple[tuple[str, str, str, str], ...] = (
    ("check", "hw dispatcher wakes at the deadline (PressFilter.check)", "hw.inputs._PressInput", "_check"),
    ("pressed", "press qualified, posted to the outbox", "hw.inputs.DoorbellButton", "_pressed"),
    ("outbox", "outbox thread hands it to the bridge (a panel with an outbox)", "daemon.bridge.EventChannel", "post"),
    ("post_soon", "dispatcher queues it for the loop (no outbox)", "daemon.bridge.EventChannel", "post_soon"),
    ("in_loop", "loop runs the bridge's call", "daemon.bridge.EventChannel", "_send_in_loop"),
    ("router", "router gets the ButtonPressed", "daemon.flow.router.VisitRouter", "hw_event"),
    ("visit", "visit task starts (_run_one)", "daemon.flow.router.VisitRouter", "_run_one"),
    ("dial", "runner executes Dial", "daemon.flow.runner.VisitRunner", "_dial"),
    ("wake", "engine queues the command, wakes the owner", "daemon.sip.engine.SipEngine", "_wake"),
    ("owner", "owner thread runs the dial command", "daemon.sip._pj_owner.PjOwner", "dial"),
    ("make_call", "pjsua2 makeCall starts", "daemon.sip._pj_call_commands.CallCommands", "_placed"),
)
SENT = ("sent", "pjsua2 makeCall returned (INVITE sent)")
ARRIVED = "INVITE arrives at the relay"
# Every row :func:`stage_rows` may give, in path order (a run lacks the rows of stages none of its presses ran).
ROW_ORDER = (*(what for _key, what, *_ in STAGES), SENT[1], ARRIVED)

stamps: list[tuple[str, float, float]] = []
armed = [False]
per_thread = [False]
thread_cpu: dict[str, dict[str, int]] = {}  # --threads: at "edge", "check" and "sent", ns on CPU per thread name


def threads_ns() -> dict[str, int]:
    """Nanoseconds on CPU of each of this process's threads (/proc schedstat), summed by thread name."""
    import os
    import threading

    python_names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, int] = {}
    me = str(threading.get_native_id())
    # The calling thread's own figure last: what reading the others cost it stays out of its path's CPU.
    for tid in sorted(os.listdir("/proc/self/task"), key=lambda t: t == me):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = python_names.get(int(tid)) or f.read().strip()
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                ns = int(f.read().split()[0])
        except OSError:
            continue
        if tid == me:
            # A running thread's schedstat is only brought up to date when it is next scheduled: its own clock
            # (the same runtime, brought up to date) is read instead, last.
            ns = time.thread_time_ns()
        out[name] = out.get(name, 0) + ns
    return out


def _stamp(key: str) -> None:
    if armed[0]:
        stamps.append((key, time.monotonic(), time.process_time()))
        if per_thread[0] and key == "check" and key not in thread_cpu:
            thread_cpu[key] = threads_ns()


def _wrap(key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if getattr(fn, "__code__", None) is not None and fn.__code__.co_flags & 0x80:  # a coroutine function

        @functools.wraps(fn)
        async def async_stamped(*args: Any, **kwargs: Any) -> Any:
            _stamp(key)
            return await fn(*args, **kwargs)

        return async_stamped

    @functools.wraps(fn)
    def stamped(*args: Any, **kwargs: Any) -> Any:
        _stamp(key)
        try:
            return fn(*args, **kwargs)
        finally:
            if key == "make_call":
                _stamp(SENT[0])

    return stamped


def install() -> None:
    """Wrap every stage's method (imports the daemon's modules and pjsua2)."""
    import importlib
    import inspect

    for key, _what, cls_path, method in STAGES:
        module_name, cls_name = cls_path.rsplit(".", 1)
        cls = getattr(importlib.import_module(module_name), cls_name)
        if not hasattr(cls, method):  # a stage of another version of the path (a tree measured before a change)
            continue
        static = isinstance(inspect.getattr_static(cls, method), staticmethod)
        wrapped = _wrap(key, getattr(cls, method))
        setattr(cls, method, staticmethod(wrapped) if static else wrapped)


def per_press(visits: list[dict[str, Any]], invites: list[float], min_press_s: float) -> list[dict[str, Any]]:
    """Per press: each stage's first stamp after the qualifying moment, as (ms after it, CPU ms since it)."""
    out = []
    for v in visits:
        qualified = v["edge"] + min_press_s
        invite = next((t for t in sorted(invites) if t >= v["edge"]), None)
        if invite is None:
            continue
        mine = [s for s in v.get("stamps", []) if s[1] <= invite + 0.001]
        if not mine:
            continue
        cpu0 = v["cpu_at_edge"]
        row: dict[str, Any] = {"invite_ms": (invite - qualified) * 1000, "cpu_to_invite_ms": None}
        for key in [k for k, *_ in STAGES] + [SENT[0]]:
            first = next((s for s in mine if s[0] == key), None)
            if first is not None:
                row[key] = ((first[1] - qualified) * 1000, (first[2] - cpu0) * 1000)
        if SENT[0] in row:
            row["cpu_to_invite_ms"] = row[SENT[0]][1]
        out.append(row)
    return out


def stage_rows(presses: list[dict[str, Any]]) -> list[list[str]]:
    """Table rows: stage, median and p99 ms after the qualifying moment, median process CPU ms since the edge."""
    from benchmarks._stats import summarize

    rows = []
    for key, what in [(k, w) for k, w, *_ in STAGES] + [SENT]:
        walls = [p[key][0] for p in presses if key in p]
        cpus = [p[key][1] for p in presses if key in p]
        if not walls:
            continue
        w, c = summarize(walls), summarize(cpus)
        rows.append([what, str(w["n"]), f"{w['median']:.3f}", f"{w['p99']:.3f}", f"{c['median']:.3f}"])
    inv = summarize([p["invite_ms"] for p in presses])
    cpu = summarize([p["cpu_to_invite_ms"] for p in presses if p["cpu_to_invite_ms"] is not None])
    rows.append(
        [
            ARRIVED,
            str(inv["n"]),
            f"{inv['median']:.3f}",
            f"{inv['p99']:.3f}",
            f"{cpu['median']:.3f}",
        ]
    )
    return rows


def thread_rows(visits: list[dict[str, Any]]) -> str:
    """Median CPU ms per thread name: during the hold (edge -> check) and on the path (check -> sent)."""
    import statistics

    lines = []
    spans = (("hold", "edge", "check"), ("path", "check", "invite"))
    names = sorted({n for v in visits if "threads" in v for snap in v["threads"].values() for n in snap})
    for name in names:
        cells = [name]
        for _label, a, b in spans:
            vals = [
                (v["threads"][b].get(name, 0) - v["threads"][a].get(name, 0)) / 1e6
                for v in visits
                if a in v.get("threads", {}) and b in v.get("threads", {})
            ]
            cells.append(f"{statistics.median(vals):.3f}/{max(vals):.3f}" if vals else "-")
        lines.append(" | ".join(cells))
    return "thread | hold (edge -> check) median/max ms | path (check -> INVITE at relay) median/max ms\n" + "\n".join(
        lines
    )


def main() -> None:
    import os
    import threading

    from benchmarks import app_bench
    from benchmarks._proc import emit as real_emit

    install()
    real_press = app_bench.press
    captured: list[dict[str, Any]] = []

    async def press(*args: Any, **kwargs: Any) -> dict[str, Any]:
        if keep_stamps:  # before the edge: the names of the threads that may run on the press's path
            thread_names.update({t.native_id: t.name for t in threading.enumerate() if t.native_id is not None})
        stamps.clear()
        thread_cpu.clear()
        if per_thread[0]:
            thread_cpu["edge"] = threads_ns()
        armed[0] = True
        cpu = time.process_time()
        visit = await real_press(*args, **kwargs)
        armed[0] = False
        visit["cpu_at_edge"] = cpu
        visit["stamps"] = list(stamps)
        if thread_cpu:
            visit["threads"] = dict(thread_cpu)
        return visit

    def emit(result: dict[str, Any]) -> None:
        result["stages"] = per_press(result.get("visits", []), result.get("invites", []), app_bench.MIN_PRESS_MS / 1000)
        captured.append(result)
        if keep_stamps:
            result["thread_names"] = {str(k): v for k, v in thread_names.items()}
            result["pid"] = os.getpid()
        if not show:
            if not keep_stamps:
                for v in result.get("visits", []):
                    v.pop("stamps", None)
            real_emit(result)

    class SnapshotList(list[float]):
        """The relay's INVITE stamps: with --threads, each thread's CPU as the INVITE arrives (the relay runs
        outside the quota, so reading /proc there costs the measured path nothing)."""

        def append(self, t: float) -> None:
            super().append(t)
            if per_thread[0] and armed[0] and "invite" not in thread_cpu:
                thread_cpu["invite"] = threads_ns()

    class Stamper(app_bench.InviteStamper):  # type: ignore[name-defined, misc]
        def __init__(self, listen_port: int, far_port: int) -> None:
            super().__init__(listen_port, far_port)
            self.invites = SnapshotList()

    # The harness's own names, replaced for this run (setattr: they are module globals of app_bench).
    for name, value in (("InviteStamper", Stamper), ("press", press), ("emit", emit)):
        setattr(app_bench, name, value)
    argv = sys.argv[1:]
    show = "--emit" not in argv
    per_thread[0] = "--threads" in argv
    # --keep-stamps: each visit keeps its raw stamps and the result names the process's Python threads (by native
    # id), for benchmarks.press_sched, which lines them up with the kernel's scheduler trace.
    keep_stamps = "--keep-stamps" in argv
    thread_names: dict[int, str] = {}
    sys.argv = [sys.argv[0], *(a for a in argv if a not in ("--emit", "--threads", "--keep-stamps"))]
    app_bench.main()
    if show:
        for row in stage_rows(captured[-1]["stages"]):
            print(" | ".join(row))
        if per_thread[0]:
            print(thread_rows(captured[-1]["visits"]))


if __name__ == "__main__":
    main()
