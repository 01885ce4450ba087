"""Why a press waits for the next quota period: the scheduler's trace of figure 1 under the quota, press by press.

Runs :mod:`benchmarks.press_stages` (figure 1's harness, the whole app, its stages stamped) in a CPU-quota cgroup
(as :mod:`benchmarks.cpu_quota` does) while ``perf record`` (outside the cgroup) records every context switch,
wake-up and migration of both CPUs on CLOCK_MONOTONIC, the clock of the stamps. For each press, from the qualifying
moment (edge + the hold) to the INVITE at the relay, it says:

* which threads of the process ran, on which CPU, for how long (the path's CPU, and what ran beside it);
* each wait of a runnable thread of the process: *throttled* when its CPU went idle meanwhile (only a throttled
  cgroup leaves a runnable thread waiting beside an idle CPU), else *contention* (another process had the CPU),
  with the stage the press was in and how much CPU the process had used in the quota period so far;
* how much CPU the process had already used in the current period at the qualifying moment.

A throttle that comes while the process has used less than its quota in the period is the cgroup's runtime stranded
on the other CPU: CFS bandwidth hands runtime to each CPU in slices of ``kernel.sched_cfs_bandwidth_slice_us``
(5 ms by default, more than this quota's 2.5 ms), so one CPU can hold the whole period's budget in its local pool
while a thread woken on the other CPU finds none. The quota period's boundaries are found from the trace (the
moments throttled threads resume, modulo the period).

    python -m benchmarks.press_sched [--presses 40] [--quota 0.25] [--period-us 10000] [--slice-us N]
                                     [--perf-data PATH] [--json PATH]

Diagnosis only (root, perf): not part of ``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._proc import ROOT, child_env
from benchmarks.cpu_quota import CpuQuota, bandwidth_slice, only_this_child, quota_unavailable

__all__ = ["Run", "Wait", "analyze", "main", "parse_perf"]

MIN_PRESS_S = 0.050
RELEASE_WINDOW_S = 600e-6  # a wait ending this soon after one of the cgroup's bandwidth timers was ended by it
EVENTS = (
    "sched:sched_switch",
    "sched:sched_wakeup",
    "sched:sched_wakeup_new",
    "sched:sched_migrate_task",
    "sched:sched_stat_runtime",  # the runtime charged to a task: what the quota counts (steal excluded)
    "timer:hrtimer_expire_entry",  # the quota's period timer (refill) and slack timer (returned runtime handed on)
)
PERIOD_TIMER, SLACK_TIMER = "sched_cfs_period_timer", "sched_cfs_slack_timer"

_HEAD = re.compile(r"^\s*(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s(.*)$")
_SWITCH = re.compile(
    r"prev_comm=(.*?) prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+) next_prio"
)
_WAKE = re.compile(r"comm=(.*?) pid=(\d+) prio=\d+ target_cpu=(\d+)")
_MIGRATE = re.compile(r"comm=(.*?) pid=(\d+) prio=\d+ orig_cpu=(\d+) dest_cpu=(\d+)")
_RUNTIME = re.compile(r"comm=(.*?) pid=(\d+) runtime=(\d+)")
_TIMER = re.compile(r"hrtimer=(\S+) function=(\S+)")


@dataclass(frozen=True)
class Run:
    tid: int
    cpu: int
    start: float
    end: float


@dataclass(frozen=True)
class Wait:
    """A thread of the process runnable but not running: from its wake-up (or preemption) to its next run."""

    tid: int
    cpu: int
    start: float
    end: float
    woken_from_cpu: int | None  # the CPU of the thread that woke it (None: preempted, not woken)


@dataclass
class Trace:
    runs: list[Run] = field(default_factory=list)
    waits: list[Wait] = field(default_factory=list)
    charged: list[tuple[float, int, float]] = field(default_factory=list)  # (time, tid, seconds of runtime)
    timers: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (function, address) -> expiries
    comms: dict[int, str] = field(default_factory=dict)


def parse_perf(lines: Iterable[str], pid: int) -> Trace:
    """The process's runs, waits and charged runtime, and the bandwidth timers' expiries, from ``perf script``."""
    mine: set[int] = set()
    lines = list(lines)
    for line in lines:  # our threads: every one is the current task of some sample (it was switched out at least once)
        m = _HEAD.match(line)
        if m and int(m.group(1)) == pid:
            mine.add(int(m.group(2)))
    trace = Trace()
    running: dict[int, tuple[int, float]] = {}  # cpu -> (tid, since)
    runnable: dict[int, tuple[float, int, int | None]] = {}  # tid -> (since, cpu, waker's cpu)
    for line in lines:
        m = _HEAD.match(line)
        if not m:
            continue
        cpu, t, event, rest = int(m.group(3)), float(m.group(4)), m.group(5), m.group(6)
        if event == "sched:sched_switch":
            s = _SWITCH.search(rest)
            if not s:
                continue
            prev, state, nxt = int(s.group(2)), s.group(3), int(s.group(5))
            if prev in mine:
                trace.comms[prev] = s.group(1)
                since = running.get(cpu, (None, None))[1]
                if since is not None:
                    trace.runs.append(Run(prev, cpu, since, t))
                if state.startswith("R"):
                    runnable[prev] = (t, cpu, None)
            if nxt in mine and nxt in runnable:
                w, _wcpu, waker = runnable.pop(nxt)
                trace.waits.append(Wait(nxt, cpu, w, t, waker))
            running[cpu] = (nxt, t)
        elif event == "sched:sched_stat_runtime":
            s = _RUNTIME.search(rest)
            if s and int(s.group(2)) in mine:
                trace.charged.append((t, int(s.group(2)), int(s.group(3)) / 1e9))
        elif event == "timer:hrtimer_expire_entry":
            s = _TIMER.search(rest)
            if s and s.group(2) in (PERIOD_TIMER, SLACK_TIMER):
                trace.timers.setdefault((s.group(2), s.group(1)), []).append(t)
        elif event in ("sched:sched_wakeup", "sched:sched_wakeup_new"):
            s = _WAKE.search(rest)
            if s and int(s.group(2)) in mine:
                runnable[int(s.group(2))] = (t, int(s.group(3)), cpu)
        elif event == "sched:sched_migrate_task":
            s = _MIGRATE.search(rest)
            if s and int(s.group(2)) in runnable:
                w, _c, waker = runnable[int(s.group(2))]
                runnable[int(s.group(2))] = (w, int(s.group(4)), waker)
    trace.runs.sort(key=lambda r: r.start)
    trace.charged.sort()
    return trace


def _released(waits: list[Wait], expiries: list[float]) -> int:
    """How many waits of at least 0.3 ms ended within RELEASE_WINDOW_S after one of ``expiries``."""
    n = 0
    for w in waits:
        i = bisect.bisect_right(expiries, w.end) - 1
        if w.end - w.start >= 300e-6 and i >= 0 and w.start < expiries[i] and w.end - expiries[i] <= RELEASE_WINDOW_S:
            n += 1
    return n


def bandwidth_timers(trace: Trace) -> tuple[list[float], list[float]]:
    """The measured cgroup's period timer expiries (the refills) and its slack timer's: of every cgroup's timers in
    the trace, the period timer whose expiries most often end a wait of the process, and the slack timer next to it
    in memory (both are fields of the cgroup's cfs_bandwidth)."""
    periods = {addr: ts for (fn, addr), ts in trace.timers.items() if fn == PERIOD_TIMER}
    if not periods:
        return [], []
    addr = max(periods, key=lambda a: _released(trace.waits, periods[a]))
    slacks = {a: ts for (fn, a), ts in trace.timers.items() if fn == SLACK_TIMER}
    near = [a for a in slacks if abs(int(a, 16) - int(addr, 16)) < 512]
    return sorted(periods[addr]), sorted(slacks[near[0]]) if near else []


class Charged:
    """The runtime charged to the process in any window (from sched_stat_runtime)."""

    def __init__(self, charged: list[tuple[float, int, float]]) -> None:
        self.charged = charged
        self.times = [c[0] for c in charged]

    def within(self, a: float, b: float) -> float:
        return sum(c[2] for c in self.charged[bisect.bisect_right(self.times, a) : bisect.bisect_right(self.times, b)])

    def by_thread(self, a: float, b: float) -> dict[int, float]:
        out: dict[int, float] = {}
        for _t, tid, s in self.charged[bisect.bisect_right(self.times, a) : bisect.bisect_right(self.times, b)]:
            out[tid] = out.get(tid, 0.0) + s
        return out


def _period_start(expiries: list[float], t: float, period: float) -> float | None:
    """The start of the quota period ``t`` falls in: the last refill, or (the timer idle since) its phase."""
    i = bisect.bisect_right(expiries, t) - 1
    if i < 0:
        return None
    return t - ((t - expiries[i]) % period)


def _stage_at(stamps: list[list[Any]], t: float) -> str:
    before = [s for s in stamps if s[1] <= t]
    return str(before[-1][0]) if before else "hold"


def _cpus(trace: Trace, tid: int, a: float, b: float) -> list[int]:
    return sorted({r.cpu for r in trace.runs if r.tid == tid and r.start < b and r.end > a})


def analyze(result: dict[str, Any], trace: Trace, period: float, quota: float) -> dict[str, Any]:
    """Per press: latency, the runtime charged in the period before it, its path's runtime by thread, its waits by
    stage and cause."""
    pid = int(result["pid"])
    names = {int(k): v for k, v in result.get("thread_names", {}).items()}
    names[pid] = "loop (MainThread)"

    def name(tid: int) -> str:
        return names.get(tid) or f"{trace.comms.get(tid, '?')}[{tid}]"

    refills, slacks = bandwidth_timers(trace)
    releases = sorted([(t, "refill") for t in refills] + [(t, "slack") for t in slacks])
    release_times = [t for t, _ in releases]
    charged = Charged(trace.charged)
    quota_s = quota * period
    invites = sorted(result["invites"])
    presses = []
    for v in result["visits"]:
        q = v["edge"] + MIN_PRESS_S
        i = bisect.bisect_left(invites, v["edge"])
        if i >= len(invites):
            continue
        inv = invites[i]
        start = _period_start(refills, q, period)
        stamps = [s for s in v.get("stamps", []) if s[1] <= inv + 0.001]
        waits = []
        for w in trace.waits:
            if w.end <= q or w.start >= inv or w.end - w.start < 50e-6:
                continue
            j = bisect.bisect_right(release_times, w.end) - 1
            by = (
                releases[j][1]
                if j >= 0 and w.start < releases[j][0] <= w.end <= releases[j][0] + RELEASE_WINDOW_S
                else ""
            )
            w_start = _period_start(refills, w.start, period)
            used = None if w_start is None else charged.within(w_start, w.start)
            if not by:
                kind = "contention"  # another process had the CPU
            elif used is not None and used < quota_s - 0.2e-3:
                kind = f"throttled, released by the {by} timer, with budget left in the period (stranded on a CPU)"
            else:
                kind = f"throttled, released by the {by} timer, the period's budget spent"
            waits.append(
                {
                    "thread": name(w.tid),
                    "cpu": w.cpu,
                    "from_ms": (max(w.start, q) - q) * 1000,
                    "ms": (min(w.end, inv) - max(w.start, q)) * 1000,
                    "kind": kind,
                    "stage": _stage_at(stamps, w.start),
                    "woken_from_cpu": w.woken_from_cpu,
                    "period_used_ms": None if used is None else used * 1000,
                }
            )
        presses.append(
            {
                "invite_ms": (inv - q) * 1000,
                "period_used_before_ms": None if start is None else charged.within(start, q) * 1000,
                "period_phase_at_press_ms": None if start is None else (q - start) * 1000,
                "refills_crossed": sum(1 for t in refills if q < t <= inv),
                "path_cpu_ms": charged.within(q, inv) * 1000,
                "path_threads": {
                    name(t): [round(d * 1000, 3), _cpus(trace, t, q, inv)]
                    for t, d in sorted(charged.by_thread(q, inv).items(), key=lambda x: -x[1])
                },
                "waits": waits,
                "stages_ms": {s[0]: round((s[1] - q) * 1000, 3) for s in reversed(stamps)},
            }
        )
    return {"refills": len(refills), "slack_releases": len(slacks), "presses": presses, "quota_ms": quota_s * 1000}


def _fmt(x: float | None) -> str:
    return "?" if x is None else f"{x:.2f}"


def summary(a: dict[str, Any], slow_ms: float = 6.0) -> str:
    """A readable account: each slow press in full, then the throttles counted by stage and by cause."""
    presses = a["presses"]
    lines = [
        f"{len(presses)} presses; quota {a['quota_ms']:.2f} ms per period; "
        f"refills {a['refills']}, slack releases {a['slack_releases']}"
    ]
    lat = sorted(p["invite_ms"] for p in presses)
    if lat:
        lines.append(f"press qualified -> INVITE: median {statistics.median(lat):.2f} ms, max {lat[-1]:.2f} ms")
    throttles: collections.Counter[str] = collections.Counter()
    for p in presses:
        for w in p["waits"]:
            if w["kind"] != "contention":
                throttles[f"{w['kind'].split(', ', 2)[-1]} | stage {w['stage']} | {w['thread']}"] += 1
        if p["invite_ms"] < slow_ms:
            continue
        lines.append(
            f"\n-- press: INVITE {p['invite_ms']:.2f} ms; charged in the period before it "
            f"{_fmt(p['period_used_before_ms'])} ms "
            f"({_fmt(p['period_phase_at_press_ms'])} ms into it); refills crossed {p['refills_crossed']}; "
            f"path runtime {p['path_cpu_ms']:.2f} ms"
        )
        lines.append(f"   stages (ms after q): {p['stages_ms']}")
        lines.append(f"   runtime on the path (ms, CPUs): {p['path_threads']}")
        for w in p["waits"]:
            lines.append(
                f"   wait: {w['thread']} on CPU {w['cpu']} at {w['from_ms']:.2f} for {w['ms']:.2f} ms, "
                f"stage {w['stage']}, woken from CPU {w['woken_from_cpu']}, "
                f"charged in the period {_fmt(w['period_used_ms'])} ms: {w['kind']}"
            )
    lines.append(f"\nthrottles on press paths: {sum(throttles.values())}")
    for k, n in throttles.most_common():
        lines.append(f"  {n:3d}  {k}")
    return "\n".join(lines)


def record(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    """One press_stages run in the quota's cgroup while perf records the scheduler on both CPUs."""
    quota_us = round(args.quota * args.period_us)
    perf = subprocess.Popen(
        ["perf", "record", "-a", "-k", "CLOCK_MONOTONIC", *(x for e in EVENTS for x in ("-e", e)), "-o", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)  # perf opens its events on every CPU
        cmd = [sys.executable, "-m", "benchmarks.press_stages", "--emit", "--keep-stamps", "--idle-seconds", "1"]
        cmd += ["--presses", str(args.presses), "--logging", args.logging]
        with (
            CpuQuota(quota_us, args.period_us) as quota,
            subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=child_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                preexec_fn=quota.join,  # noqa: PLW1509 - as cpu_quota._run
            ) as proc,
            only_this_child(quota, proc),
        ):
            out, err = proc.communicate(timeout=900)
            throttled = quota.throttled()
    finally:
        perf.send_signal(signal.SIGINT)
        perf.wait(60)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"press_stages exited {proc.returncode}: {err[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["cgroup"] = throttled
    return result


def perf_lines(data: Path) -> Iterator[str]:
    with subprocess.Popen(
        ["perf", "script", "-i", str(data), "-F", "pid,tid,cpu,time,event,trace"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as p:
        assert p.stdout is not None
        yield from p.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presses", type=int, default=40)
    ap.add_argument("--quota", type=float, default=0.25)
    ap.add_argument("--period-us", type=int, default=10_000)
    ap.add_argument("--slice-us", type=int, default=None, help="kernel.sched_cfs_bandwidth_slice_us for the run")
    ap.add_argument("--logging", default="journal")
    ap.add_argument("--perf-data", type=Path, default=None, help="keep perf's data here (default: a temporary file)")
    ap.add_argument("--json", type=Path, default=None, help="write the per-press analysis here")
    args = ap.parse_args()
    if (why := quota_unavailable()) is not None:
        raise SystemExit(f"press_sched: {why}")
    with tempfile.TemporaryDirectory(prefix="press-sched-") as tmp:
        data = args.perf_data or Path(tmp) / "perf.data"
        with bandwidth_slice(args.slice_us) as used_slice:
            result = record(args, data)
        trace = parse_perf(perf_lines(data), int(result["pid"]))
    a = analyze(result, trace, args.period_us / 1e6, args.quota)
    a.update(slice_us=used_slice, cgroup=result["cgroup"], loadavg=os.getloadavg())
    print(summary(a))
    print(f"slice {used_slice} us; cgroup {result['cgroup']}; load {a['loadavg']}")
    if args.json:
        args.json.write_text(json.dumps(a, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
