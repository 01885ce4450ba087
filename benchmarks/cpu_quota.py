"""Figures under a Pi-sized CPU quota (issue 18): start -> READY and press -> INVITE, ours and the baseline.

A CPU quota (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` where the cpu controller
is on the v1 hierarchy, as here) caps the measured process at ``--quota`` of one core, enforced every
``--period``. It approximates a slower CPU: it does not replace a Pi (a Cortex-A53 is slower per
instruction all the time, has other caches, memory and an SD card; a quota runs at full speed and then
stops the process until the next period).

* start -> READY: ``intercomd run`` (the idle benchmark's config: mock pins, registered at a local kamailio)
  with ``$NOTIFY_SOCKET`` pointing here; from just before the process is spawned to ``READY=1``. The first
  start fills the prompt cache (reported as cold); the others reuse it (warm), as a panel's restarts do.
* press -> INVITE (figure 1): :mod:`benchmarks.app_bench` (the whole app, figure 1's harness) and
  :mod:`benchmarks.baseline_press` (the DoorPi-model baseline), each a child process in the cgroup.

Only the measured process is in the cgroup: the peers it starts (kamailio, the far end) are moved back to
the parent cgroup as soon as they appear, and so is (cgroup v1) the harness's INVITE-stamping relay thread
(:data:`benchmarks._wire.RELAY_THREAD_NAME`), so that the stamp is not delayed by the quota it measures.
The cgroup is removed on exit, whatever happens.

    python -m benchmarks.cpu_quota [--quota 0.25] [--period-us 10000] [--starts 3] [--presses 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._proc import ROOT, child_env, emit, run_child
from benchmarks._stats import summarize
from benchmarks._wire import RELAY_THREAD_NAME
from benchmarks.report import Figure, console

__all__ = ["CpuQuota", "main", "quota_figure", "quota_unavailable"]

V2_ROOT = Path("/sys/fs/cgroup")
V1_ROOT = Path("/sys/fs/cgroup/cpu")
MIN_PRESS_MS = 50.0  # app_bench's min_press_ms: "press qualified" is the edge plus this hold


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

    def __init__(self, quota_us: int, period_us: int) -> None:
        self.quota_us, self.period_us = quota_us, period_us
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

    def release(self, pid: int) -> None:
        """Move ``pid`` back to the parent cgroup."""
        with contextlib.suppress(OSError):  # it ended meanwhile
            (self.path.parent / "cgroup.procs").write_text(str(pid))

    def release_thread(self, tid: int) -> None:
        """Move one thread back to the parent cgroup (v1 only: v2 keeps a process's threads together)."""
        if self.version == 1:
            with contextlib.suppress(OSError):
                (self.path.parent / "tasks").write_text(str(tid))

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


def _run(module: str, args: list[str], quota: CpuQuota | None, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", f"benchmarks.{module}", *args]
    join: Callable[[], None] | None = quota.join if quota else None
    # preexec_fn only writes the child's pid into cgroup.procs (no lock, no allocation that a thread could hold);
    # joining before exec is what puts the child's start-up under the quota too.
    with (
        subprocess.Popen(
            cmd,
            cwd=ROOT,
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


def import_seconds(quota: CpuQuota | None) -> float:
    """Wall seconds of ``python -c 'import daemon.app'``: the import share of start -> READY."""
    t0 = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", "import daemon.app"],
        cwd=ROOT,
        env=child_env(),
        check=True,
        timeout=120,
        preexec_fn=quota.join if quota else None,
    )
    return time.monotonic() - t0


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.idle_wakeups import _config
    from tests.support.peers import Kamailio

    result: dict[str, Any] = {
        "quota": args.quota,
        "period_us": args.period_us,
        "ready_s": {},
        "import_s": {},
        "press": {},
    }
    quota_us = round(args.quota * args.period_us)
    with tempfile.TemporaryDirectory(prefix="quota-") as tmpdir:
        tmp = Path(tmpdir)
        with Kamailio(tmp / "kamailio", users={"portao": "portao-secret", "resident": "resident-secret"}) as kam:
            config = _config(tmp, kam, None)
            result["ready_cold_s"] = start_to_ready(config, None)  # fills the prompt cache
            for label in ("no quota", "quota"):
                with CpuQuota(quota_us, args.period_us) if label == "quota" else contextlib.nullcontext() as q:
                    result["ready_s"][label] = [start_to_ready(config, q) for _ in range(args.starts)]
                    result["import_s"][label] = [import_seconds(q) for _ in range(args.starts)]
                    if q is not None:
                        result["cgroup"] = {"version": q.version, "path": str(q.path), **q.throttled()}
                        cold = tmp / "cold-under-quota"  # its own cache directory: every prompt synthesized
                        cold.mkdir()
                        result["ready_cold_quota_s"] = start_to_ready(_config(cold, kam, None), q, within=120)
    for label in ("no quota", "quota"):
        with CpuQuota(quota_us, args.period_us) if label == "quota" else contextlib.nullcontext() as q:
            ours = _run("app_bench", ["--presses", str(args.presses), "--idle-seconds", "1"], q, 600)
            base = _run("baseline_press", ["--n", str(args.presses)], q, 600)
        runs: dict[str, Any] = {}
        if "error" in ours:
            runs["ours_error"] = ours["error"]
        else:
            invites = sorted(ours["invites"])
            runs["ours_ms"] = [
                (after[0] - v["edge"]) * 1000 - MIN_PRESS_MS
                for v in ours["visits"]
                if (after := [t for t in invites if t >= v["edge"]])
            ]
        if "error" in base:
            runs["baseline_error"] = base["error"]
        else:
            runs["baseline_ms"] = base["edge_to_invite_ms"]
        result["press"][label] = runs
    result["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
    return result


def _stats_row(label: str, samples: list[float], unit: float = 1.0, digits: int = 2) -> list[str]:
    if not samples:
        return [label, "0", "-", "-", "-"]
    s = summarize([x * unit for x in samples])
    return [label, str(s["n"]), f"{s['median']:.{digits}f}", f"{s['p99']:.{digits}f}", f"{s['max']:.{digits}f}"]


def figure_from(r: dict[str, Any]) -> Figure:
    pct = f"{100 * r['quota']:g} % of one core per {r['period_us'] / 1000:g} ms"
    fig = Figure(
        "fig9b_quota",
        "9b. Under a Pi-sized CPU quota: start -> READY and press -> INVITE",
        target="under the quota: press -> INVITE p99 < 10 ms; READY < 5 s with a warm prompt cache (issue 18)",
    )
    ready_rows = [_stats_row("intercomd start -> READY, cold prompt cache, no quota", [r["ready_cold_s"]])]
    if "ready_cold_quota_s" in r:
        ready_rows.append(_stats_row(f"intercomd start -> READY, cold prompt cache, {pct}", [r["ready_cold_quota_s"]]))
    for label, samples in r["ready_s"].items():
        where = label if label == "no quota" else pct
        ready_rows.append(_stats_row(f"intercomd start -> READY, warm cache, {where}", samples))
        if label in r.get("import_s", {}):
            ready_rows.append(_stats_row(f"of which python -c 'import daemon.app', {where}", r["import_s"][label]))
    fig.tables.append((["series (s)", "starts", "median s", "p99 s", "max s"], ready_rows))
    press_rows = []
    for label, runs in r["press"].items():
        where = "no quota" if label == "no quota" else pct
        for key, name in (("ours", "ours: press qualified -> INVITE"), ("baseline", "baseline: edge -> INVITE")):
            if f"{key}_error" in runs:
                press_rows.append([f"{name}, {where}", "error", runs[f"{key}_error"][:200], "", ""])
            else:
                press_rows.append(_stats_row(f"{name}, {where}", runs[f"{key}_ms"], digits=3))
    fig.tables.append((["series (ms)", "presses", "median ms", "p99 ms", "max ms"], press_rows))
    cg = r.get("cgroup", {})
    fig.notes += [
        f"cgroup v{cg.get('version', '?')} CPU quota, {pct}; during the READY starts the quota throttled "
        f"{cg.get('nr_throttled', '?')} of {cg.get('nr_periods', '?')} periods. Load average at the end: "
        f"{' '.join(r['loadavg'])} (2 x86 cores shared with other jobs).",
        "A quota approximates a slower CPU; it does not replace a Pi. The process runs at this machine's full "
        "speed until its budget for the period is spent, then waits for the next period: latency grows in "
        "steps of up to one period, not smoothly as on a slower core, and caches, memory and storage are this "
        "machine's.",
        "Ours: figure 1's harness (benchmarks.app_bench, whole app in one process); the baseline's edge -> "
        "INVITE includes DoorPi's 50 ms polling tick, ours excludes the 50 ms min_press_ms hold. Only the "
        "measured process is in the cgroup; kamailio, the far end and (cgroup v1) the relay thread that stamps "
        "the INVITE run outside it. The press driver stays inside: it polls the relay pin every 5 ms on the "
        "app's loop during each visit, a harness cost a real panel does not have.",
    ]
    return fig


def quota_figure(errors: list[str]) -> Figure:
    """The quota figure of ``python -m benchmarks`` (group ``quota``): this module run as a child."""
    title = "9b. Under a Pi-sized CPU quota: start -> READY and press -> INVITE"
    if (why := quota_unavailable()) is not None:
        return Figure("fig9b_quota", title, missing=why)
    result = run_child("cpu_quota", "--emit", timeout=900)
    if "error" in result:
        errors.append(str(result["error"]))
        return Figure("fig9b_quota", title, missing=str(result["error"]))
    return figure_from(result)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quota", type=float, default=0.25, help="share of one core (0.25: a quarter)")
    ap.add_argument("--period-us", type=int, default=10_000, help="the quota's period (the issue: 10 ms)")
    ap.add_argument("--starts", type=int, default=3, help="warm starts per side for start -> READY")
    ap.add_argument("--presses", type=int, default=20, help="presses per design and side for press -> INVITE")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--emit", action="store_true", help="print the result as one JSON line")
    args = ap.parse_args()
    if (why := quota_unavailable()) is not None:
        raise SystemExit(f"cpu_quota: {why}")
    result = measure(args)
    print(console([figure_from(result)]), flush=True)
    path = Path(result["cgroup"]["path"])
    print(f"cgroup {path} {'left behind' if path.exists() else 'removed'}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    if args.emit:
        emit(result)


if __name__ == "__main__":
    main()
