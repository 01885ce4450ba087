"""Figures under a Pi-sized CPU quota (issue 18): start -> READY, figures 1, 2, 4 and 7's ring group, ours and the
baseline.

A CPU quota (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` where the cpu controller
is on the v1 hierarchy, as here) caps the measured process at ``--quota`` of one core, enforced every
``--period``. It approximates a slower CPU: it does not replace a Pi (a Cortex-A53 is slower per
instruction all the time, has other caches, memory and an SD card; a quota runs at full speed and then
stops the process until the next period).

* start -> READY: ``intercomd run`` (the idle benchmark's config: mock pins, registered at a local kamailio)
  with ``$NOTIFY_SOCKET`` pointing here; from just before the process is spawned to ``READY=1``. The first
  start fills the prompt cache (reported as cold); the others reuse it (warm), as a panel's restarts do.
  :mod:`benchmarks.start_stages` breaks a start down (interpreter, import, config, panel, history, prompts, SIP
  engine, wiring), warm and cold.
* press -> INVITE (figure 1), press -> first prompt sample (figure 2), DTMF -> relay (figure 4): one run of figure
  1's harness (:mod:`benchmarks.app_bench`, the whole app) through :mod:`benchmarks.press_stages`, which also
  stamps the press path's stages; :mod:`benchmarks.baseline_press` (the DoorPi-model baseline) beside it.
* the parallel ring group of 8 under sipp's load (figure 7's harness: app_bench's load phase), with the group of
  4 as its baseline in the same run.

Only the measured process is in the cgroup: the peers it starts (kamailio, the far end) are moved back to
the parent cgroup as soon as they appear (the INVITE-stamping relay is a process of its own, so is the journal's
stand-in), and so is (cgroup v1) a relay thread of an older harness
(:data:`benchmarks._wire.RELAY_THREAD_NAME`), so that the stamp is not delayed by the quota it measures.
The cgroup is removed on exit, whatever happens.

    python -m benchmarks.cpu_quota [--quota 0.25] [--period-us 10000] [--starts 3] [--presses 20] [--load-calls 150]
                                   [--logging journal|stderr|none]
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks._journal_sink import LOGGING_MODES
from benchmarks._proc import ROOT, child_env, emit, run_child
from benchmarks._wire import RELAY_THREAD_NAME
from benchmarks.quota_report import HEAP_LABEL, SLICE_LABEL, TITLE, figure_from
from benchmarks.report import Figure, console

__all__ = ["CpuQuota", "main", "quota_figure", "quota_unavailable"]

V2_ROOT = Path("/sys/fs/cgroup")
V1_ROOT = Path("/sys/fs/cgroup/cpu")
MIN_PRESS_MS = 50.0  # app_bench's min_press_ms: "press qualified" is the edge plus this hold
LABELS = ("no quota", "quota")
# CFS bandwidth hands a cgroup's runtime to each CPU in slices of this many microseconds (kernel default 5000, more
# than this quota's 2,500 per period): one CPU can hold the period's whole budget while a thread of the same process
# woken on the other CPU is throttled. A Pi has no such pool; figures 1, 2 and 4 are also run, as a row of their
# own, with the slice at SLICE_ROW_US (set for that run only and restored).
SLICE = Path("/proc/sys/kernel/sched_cfs_bandwidth_slice_us")
SLICE_ROW_US = 1000


@contextlib.contextmanager
def bandwidth_slice(us: int | None) -> Iterator[int]:
    """kernel.sched_cfs_bandwidth_slice_us at ``us`` for the block (None: as it is), restored after; yields it."""
    before = int(SLICE.read_text())
    if us is None or us == before:
        yield before
        return
    SLICE.write_text(str(us))
    try:
        yield us
    finally:
        SLICE.write_text(str(before))


def quota_unavailable() -> str | None:
    """Why a CPU quota cannot be set here, or None when it can."""
    if os.geteuid() != 0:
        return "creating a cgroup needs root"
    controllers = V2_ROOT / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return None
    if (V1_ROOT / "cpu.cfs_quota_us").exists():
        return None
    return "no cgroup cpu controller (neither v2 cpu.max nor v1 cpu.cfs_quota_us)"


class CpuQuota:
    """A child cgroup capped at ``quota_us`` per ``period_us``; processes join it, it is removed on exit."""

    def __init__(self, quota_us: int, period_us: int, cpu: int | None = None) -> None:
        self.quota_us, self.period_us = quota_us, period_us
        # With ``cpu``, what joins is also pinned to that CPU (and what is released unpinned): see main's --cpu.
        self.cpu = cpu
        self._all_cpus = os.sched_getaffinity(0)
        v2 = (V2_ROOT / "cgroup.controllers").exists() and "cpu" in (V2_ROOT / "cgroup.controllers").read_text()
        self.version = 2 if v2 else 1
        self.path = (V2_ROOT if v2 else V1_ROOT) / f"intercom-quota-{os.getpid()}"

    def __enter__(self) -> CpuQuota:
        if self.version == 2:
            with contextlib.suppress(OSError):  # already enabled, or not needed at the root
                (V2_ROOT / "cgroup.subtree_control").write_text("+cpu")
        self.path.mkdir()
        try:
            if self.version == 2:
                (self.path / "cpu.max").write_text(f"{self.quota_us} {self.period_us}")
            else:
                (self.path / "cpu.cfs_period_us").write_text(str(self.period_us))
                (self.path / "cpu.cfs_quota_us").write_text(str(self.quota_us))
        except BaseException:
            self.path.rmdir()
            raise
        return self

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def join(self) -> None:
        """Put the calling process in the cgroup (a ``preexec_fn``: the child joins before it execs)."""
        self.procs.write_text(str(os.getpid()))
        if self.cpu is not None:
            os.sched_setaffinity(0, {self.cpu})

    def release(self, pid: int) -> None:
        """Move ``pid`` back to the parent cgroup (and, pinned, every thread of it back to every CPU)."""
        with contextlib.suppress(OSError):  # it ended meanwhile
            (self.path.parent / "cgroup.procs").write_text(str(pid))
        if self.cpu is not None:
            for task in Path(f"/proc/{pid}/task").glob("*"):
                with contextlib.suppress(OSError, ValueError):
                    os.sched_setaffinity(int(task.name), self._all_cpus)

    def release_thread(self, tid: int) -> None:
        """Move one thread back to the parent cgroup (v1 only: v2 keeps a process's threads together)."""
        if self.version == 1:
            with contextlib.suppress(OSError):
                (self.path.parent / "tasks").write_text(str(tid))
        if self.cpu is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, self._all_cpus)

    def members(self) -> list[int]:
        return [int(p) for p in self.procs.read_text().split()]

    def throttled(self) -> dict[str, int]:
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        return {k: int(v) for k, v in stat.items() if k in ("nr_periods", "nr_throttled", "throttled_usec")}

    def __exit__(self, *exc: object) -> None:
        for _ in range(50):
            for pid in self.members():
                self.release(pid)
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)  # a process was still being moved or exiting
        raise RuntimeError(f"could not remove {self.path}")


@contextlib.contextmanager
def only_this_child(quota: CpuQuota | None, proc: subprocess.Popen[str]) -> Any:
    """Keep ``proc`` alone in the cgroup: its children (peers of the harness) are moved out as they appear."""
    if quota is None:
        yield
        return
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            for pid in quota.members():
                if pid != proc.pid:
                    quota.release(pid)
            for task in Path(f"/proc/{proc.pid}/task").glob("*"):
                with contextlib.suppress(OSError):
                    if task.joinpath("comm").read_text().strip() == RELAY_THREAD_NAME:
                        quota.release_thread(int(task.name))

    watcher = threading.Thread(target=watch, name="cgroup-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join(5)


def _run(
    module: str, args: list[str], quota: CpuQuota | None, timeout: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    cmd = [sys.executable, "-m", f"benchmarks.{module}", *args]
    join: Callable[[], None] | None = quota.join if quota else None
    # preexec_fn only writes the child's pid into cgroup.procs (no lock, no allocation that a thread could hold);
    # joining before exec is what puts the child's start-up under the quota too.
    with (
        subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=join,  # noqa: PLW1509
        ) as proc,
        only_this_child(quota, proc),
    ):
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return {"error": f"{module}: timed out after {timeout:.0f} s"}
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"{module} exited {proc.returncode}: " + " | ".join(err.strip().splitlines()[-3:])}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def start_to_ready(config: Path, quota: CpuQuota | None, within: float = 60.0) -> float:
    """Seconds from spawning ``intercomd run`` to its ``READY=1``; the daemon is stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="notify-") as tmp, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        address = str(Path(tmp) / "notify")
        sock.bind(address)
        sock.settimeout(within)
        env = child_env(NOTIFY_SOCKET=address)
        cmd = [str(Path(sys.executable).parent / "intercomd"), "--config", str(config), "--log-level", "warning", "run"]
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=quota.join if quota else None,  # noqa: PLW1509 - as in _run: start-up counts under the quota
        )
        try:
            while True:
                message = sock.recv(4096).decode("utf-8", "replace")
                if "READY=1" in message.splitlines():
                    return time.monotonic() - t0
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def bytecode_env(pycache: Path | None) -> dict[str, str]:
    """The children's environment; with ``pycache``, .pyc files are written to and read from there, as on an
    installed panel (pip compiles the daemon's modules, install.sh pjsua2.py), whatever PYTHONDONTWRITEBYTECODE
    this shell has."""
    if pycache is None:
        return child_env()
    env = child_env(PYTHONPYCACHEPREFIX=str(pycache))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


IMPORT_CODE = "import daemon.app, pjsua2"  # what the daemon imports before its first line runs, pjsua2 included


def import_seconds(quota: CpuQuota | None, pycache: Path | None = None) -> float:
    """Wall seconds of ``python -c 'import daemon.app, pjsua2'``: the import share of start -> READY (``pycache``:
    with a bytecode cache there, warmed by an earlier call)."""
    t0 = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", IMPORT_CODE],
        cwd=ROOT,
        env=bytecode_env(pycache),
        check=True,
        timeout=120,
        preexec_fn=quota.join if quota else None,
    )
    return time.monotonic() - t0


def start_stages(config: Path, quota: CpuQuota | None, pycache: Path | None = None) -> dict[str, float] | str:
    """One start of the daemon in :mod:`benchmarks.start_stages`: seconds per stage, or why it failed."""
    from benchmarks.start_stages import stage_seconds

    spawned = time.monotonic()
    r = _run("start_stages", [str(config)], quota, 180, bytecode_env(pycache))
    return str(r["error"]) if "error" in r else stage_seconds(r, spawned)


def _ready(args: argparse.Namespace, result: dict[str, Any], quota_us: int) -> None:
    """start -> READY (intercomd, warm and cold prompt cache) and its stages, with and without the quota."""
    from benchmarks.idle_wakeups import _config
    from tests.support.peers import Kamailio

    with tempfile.TemporaryDirectory(prefix="quota-") as tmpdir:
        tmp = Path(tmpdir)
        with Kamailio(tmp / "kamailio", users={"portao": "portao-secret", "resident": "resident-secret"}) as kam:
            config = _config(tmp, kam, None)
            result["ready_cold_s"] = start_to_ready(config, None)  # fills the prompt cache
            for label in LABELS:
                with CpuQuota(quota_us, args.period_us) if label == "quota" else contextlib.nullcontext() as q:
                    result["ready_s"][label] = [start_to_ready(config, q) for _ in range(args.starts)]
                    result["import_s"][label] = [import_seconds(q) for _ in range(args.starts)]
                    import_seconds(None, tmp / "pycache")  # compiles every module once, as an install does
                    start_stages(config, None, tmp / "pycache")  # and the start's own (asyncio's backend, ...)
                    result["import_cached_s"][label] = [import_seconds(q, tmp / "pycache") for _ in range(args.starts)]
                    result["stages"][f"warm, {label}"] = [start_stages(config, q) for _ in range(args.starts)]
                    result["stages"][f"warm, .pyc files, {label}"] = [
                        start_stages(config, q, tmp / "pycache") for _ in range(args.starts)
                    ]
                    cold = tmp / f"cold-{label.replace(' ', '-')}"  # its own cache directory: every prompt synthesized
                    cold.mkdir()
                    result["stages"][f"cold, {label}"] = [start_stages(_config(cold, kam, None), q)]
                    if q is not None:
                        result["cgroup"] = {"version": q.version, "path": str(q.path), **q.throttled()}
                        cold = tmp / "cold-under-quota"
                        cold.mkdir()
                        result["ready_cold_quota_s"] = start_to_ready(_config(cold, kam, None), q, within=120)


def _after_edge(stamps: list[float], edge: float) -> float | None:
    i = bisect.bisect_left(stamps, edge)
    return stamps[i] if i < len(stamps) else None


def press_runs(ours: dict[str, Any]) -> dict[str, Any]:
    """Figures 1, 2 and 4 from one figure-1 harness run: ms after the qualified press (edge + the hold)."""
    invites, buffers, dtmf = sorted(ours["invites"]), sorted(ours["first_buffers"]), sorted(ours["dtmf_sent_at"])
    runs: dict[str, Any] = {"ours_ms": [], "prompt_ms": [], "dtmf_ms": [], "stages": ours.get("stages", [])}
    runs["gc"], runs["heap_frozen"] = ours.get("gc"), ours.get("heap_frozen_at_ready", 0)
    for v in ours["visits"]:
        if (invite := _after_edge(invites, v["edge"])) is not None:
            runs["ours_ms"].append((invite - v["edge"]) * 1000 - MIN_PRESS_MS)
        first = _after_edge(buffers, v["edge"])
        if first is not None and (v["opened"] is None or first <= v["opened"]):
            runs["prompt_ms"].append((first - v["edge"]) * 1000 - MIN_PRESS_MS)
        if v["opened"] is not None and (i := bisect.bisect_right(dtmf, v["opened"])):
            runs["dtmf_ms"].append((v["opened"] - dtmf[i - 1]) * 1000)
    return runs


def group_runs(r: dict[str, Any]) -> dict[str, Any]:
    """Figure 7's ring groups under load: per group size, press qualified -> INVITE, presses, served, legs rang."""
    load = r.get("load") or {}
    if "visits" not in load:
        return {"error": str(load.get("error", "no load phase"))}
    invites = sorted(load["invites"])
    out: dict[str, Any] = {"calls": load["calls"], "rate": load["rate"], "sizes": {}}
    for size in sorted({int(v["group"]) for v in load["visits"]}, reverse=True):
        visits = [v for v in load["visits"] if int(v["group"]) == size]
        legs = [leg for leg in load.get("legs", []) if leg["dialed"] == size]
        out["sizes"][str(size)] = {
            "invite_ms": [
                (t - v["edge"]) * 1000 - MIN_PRESS_MS for v in visits if (t := _after_edge(invites, v["edge"]))
            ],
            "presses": len(visits),
            "served": sum(1 for v in visits if v["opened"] is not None),
            "rang": [leg["rang"] for leg in legs],
            "failed": sum(leg["failed"] for leg in legs),
        }
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "cpu": args.cpu,
        "logging": args.logging,
        "quota": args.quota,
        "period_us": args.period_us,
        "ready_s": {},
        "import_s": {},
        "import_cached_s": {},
        "stages": {},
        "press": {},
        "group": {},
    }
    quota_us = round(args.quota * args.period_us)
    probe = CpuQuota(quota_us, args.period_us)  # not entered: the path and version every cgroup of this run takes
    result["cgroups"], result["cgroup"] = [str(probe.path)], {"version": probe.version}
    if args.starts:
        _ready(args, result, quota_us)
    result["slice_us"] = int(SLICE.read_text()) if SLICE.exists() else None
    labels = list(LABELS)
    if args.slice_row_us and result["slice_us"] is not None and args.slice_row_us != result["slice_us"]:
        labels.append(SLICE_LABEL)
        result["slice_row_us"] = args.slice_row_us
    if args.heap_row:
        labels.append(HEAP_LABEL)
    for label in labels:
        quota = CpuQuota(quota_us, args.period_us, args.cpu)
        with (
            quota if label != "no quota" else contextlib.nullcontext() as q,
            bandwidth_slice(args.slice_row_us if label == SLICE_LABEL else None),
        ):
            press_args = ["--emit", "--presses", str(args.presses), "--idle-seconds", "1", "--logging", args.logging]
            heap = ["--heap", "unsettled"] if label == HEAP_LABEL else []
            ours = _run("press_stages", press_args + heap, q, 900)
            # The baseline and the ring group once per CPU setting: the heap row changes only ours.
            base = {} if label == HEAP_LABEL else _run("baseline_press", ["--n", str(args.presses)], q, 600)
            if args.load_calls and label not in (SLICE_LABEL, HEAP_LABEL):
                load_args = ["--load-calls", str(args.load_calls), "--load-rate", str(args.load_rate)]
                load_args += ["--ring-group", str(args.ring_group)]
                group = _run("app_bench", ["--presses", "0", "--idle-seconds", "0", *load_args], q, 900)
                result["group"][label] = group if "error" in group else group_runs(group)
            if label == "quota" and q is not None:
                result["press_cgroup"] = q.throttled()
        runs = {"ours_error": ours["error"]} if "error" in ours else press_runs(ours)
        runs["journal"] = ours.get("logging", {})  # what the journal stand-in received
        if "error" in base:
            runs["baseline_error"] = base["error"]
        elif base:
            runs["baseline_ms"] = base["edge_to_invite_ms"]
        result["press"][label] = runs
    result["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
    return result


def quota_figure(errors: list[str]) -> Figure:
    """The quota figure of ``python -m benchmarks`` (group ``quota``): this module run as a child."""
    if (why := quota_unavailable()) is not None:
        return Figure("fig9b_quota", TITLE, missing=why)
    result = run_child("cpu_quota", "--emit", "--presses", "60", timeout=2400)
    if "error" in result:
        errors.append(str(result["error"]))
        return Figure("fig9b_quota", TITLE, missing=str(result["error"]))
    return figure_from(result)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quota", type=float, default=0.25, help="share of one core (0.25: a quarter)")
    ap.add_argument("--period-us", type=int, default=10_000, help="the quota's period (the issue: 10 ms)")
    ap.add_argument("--starts", type=int, default=3, help="warm starts per side for start -> READY (0: none)")
    ap.add_argument("--presses", type=int, default=20, help="presses per design and side for figures 1, 2 and 4")
    ap.add_argument("--load-calls", type=int, default=150, help="sipp calls during the ring-group presses (0: none)")
    ap.add_argument("--load-rate", type=int, default=50, help="sipp's calls per second (figure 7: 50)")
    ap.add_argument("--ring-group", type=int, default=8, help="legs of the parallel group pressed under load")
    ap.add_argument(
        "--logging",
        choices=LOGGING_MODES,
        default="journal",
        help="the daemon's logging in figures 1, 2 and 4: journal (default: as under systemd, INFO to a journald "
        "stand-in), stderr, or none (nothing at INFO: the harness before)",
    )
    ap.add_argument(
        "--cpu",
        type=int,
        default=None,
        help="figures 1, 2, 4 and the ring group under the quota: pin the measured process to this CPU (its peers "
        "are unpinned as they leave the cgroup). The quota then acts as one slower core. Unpinned, the cgroup's "
        "runtime is handed to a CPU in slices (kernel.sched_cfs_bandwidth_slice_us, 5 ms here, more than the "
        "quota's 2.5 ms): a thread woken on the other CPU may find none left there. Measured pinned (docs 9b): "
        "not better, every thread of the process then queues behind the press's path",
    )
    ap.add_argument(
        "--slice-row-us",
        type=int,
        default=SLICE_ROW_US,
        help="figures 1, 2 and 4 once more under the quota with kernel.sched_cfs_bandwidth_slice_us at this value "
        "(set for that run, restored after), a row of its own beside the kernel default's (0: not run)",
    )
    ap.add_argument(
        "--heap-row",
        type=int,
        choices=(0, 1),
        default=1,
        help="1 (default): figures 1, 2 and 4 once more under the quota with the heap not settled at READY "
        "(app_bench --heap unsettled): daemon.heap's effect in the same run",
    )
    ap.add_argument("--json", type=Path)
    ap.add_argument("--emit", action="store_true", help="print the result as one JSON line")
    args = ap.parse_args()
    if (why := quota_unavailable()) is not None:
        raise SystemExit(f"cpu_quota: {why}")
    result = measure(args)
    print(console([figure_from(result)]), flush=True)
    for path in {Path(p) for p in result["cgroups"]}:
        print(f"cgroup {path} {'left behind' if path.exists() else 'removed'}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    if args.emit:
        emit(result)


if __name__ == "__main__":
    main()
