"""Idle cost of the whole process, thread by thread, beside an idle baresip: the issue-18 anchor figure.

Starts a local kamailio, then ``intercomd run`` (mock pins, registered) and a registered baresip, waits for both to
be registered, and samples ``/proc/PID/task/*`` of both over the same ``--seconds``: CPU ticks and context switches
per thread (the daemon's main thread runs the event loop; ``sip-owner`` is the SIP owner thread). A
voluntary context switch is a sleep, so switches per second approximate wake-ups per second (what a Pi's power and
a C client's 0 are compared by).

    python -m benchmarks.idle_wakeups --seconds 60 [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks._proc import emit, run_child
from benchmarks.report import Figure
from daemon.simulation.phone import Baresip
from tests.mqtt.broker import Mosquitto
from tests.support.peers import Kamailio, free_port

__all__ = ["ThreadCost", "idle_figure", "main", "sample_process", "sample_processes"]

TICK = os.sysconf("SC_CLK_TCK")
LABELS = ("intercomd", "baresip")


@dataclass(frozen=True)
class ThreadCost:
    name: str
    cpu_seconds: float
    switches: int  # voluntary + involuntary context switches in the window


def _threads(pid: int) -> dict[int, tuple[str, float, int]]:
    out: dict[int, tuple[str, float, int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
            status = (task / "status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended while we looked
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICK
        switches = sum(int(line.split()[1]) for line in status.splitlines() if "ctxt_switches" in line)
        out[int(task.name)] = (name, cpu, switches)
    return out


def sample_process(pid: int, seconds: float) -> list[ThreadCost]:
    """CPU and context switches of each thread of ``pid`` over ``seconds`` (threads born in the window count whole)."""
    return sample_processes([pid], seconds)[pid]


def sample_processes(pids: list[int], seconds: float) -> dict[int, list[ThreadCost]]:
    """:func:`sample_process` for several processes over one and the same window (the anchor in the same run).
    The main thread is named ``main``: in the daemon it runs the event loop."""
    before = {pid: _threads(pid) for pid in pids}
    time.sleep(seconds)  # the measured processes are other processes: this one only waits
    out: dict[int, list[ThreadCost]] = {}
    for pid in pids:
        costs = []
        for tid, (name, cpu, switches) in _threads(pid).items():
            _, cpu0, switches0 = before[pid].get(tid, (name, 0.0, 0))
            label = f"main ({name})" if tid == pid else name
            costs.append(ThreadCost(label, cpu - cpu0, switches - switches0))
        out[pid] = sorted(costs, key=lambda c: -c.switches)
    return out


def _config(tmp: Path, kamailio: Kamailio, mqtt_port: int | None) -> Path:
    path = tmp / "intercom.toml"
    mqtt = f'[mqtt]\nhost = "127.0.0.1"\nport = {mqtt_port}\n' if mqtt_port else ""
    path.write_text(
        f"""panel_name = "idle bench"
[gpio]
pin_factory = "mock"
[[buttons]]
name = "101"
pin = 17
[sip]
bind_address = "127.0.0.1"
port = {free_port()}
rtp_port = 24000
[sip.account]
uri = "sip:portao@127.0.0.1"
registrar = "{kamailio.registrar}"
username = "portao"
password_file = "{tmp / "password"}"
[prompts]
language = "en"
[[apartments]]
name = "101"
buttons = ["101"]
residents = ["{kamailio.uri("resident")}"]
codes = ["48213579"]
[paths]
state_dir = "{tmp / "state"}"
cache_dir = "{tmp / "cache"}"
runtime_dir = "{tmp / "run"}"
{mqtt}""",
        encoding="utf-8",
    )
    (tmp / "password").write_text("portao-secret\n", encoding="utf-8")
    (tmp / "password").chmod(0o600)
    return path


def _wait_registered(intercomctl: str, socket: Path, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = subprocess.run(
            [intercomctl, "--socket", str(socket), "status", "--json"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0 and '"active": true' in result.stdout.replace("\n", " "):
            return True
        time.sleep(0.2)  # polling another process's socket from a benchmark script
    return False


@contextlib.contextmanager
def registered_intercomd(config: Path, control_socket: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``intercomd run`` on ``config``, once registered and its start-up work (prompt cache writes) has settled;
    stopped at the block's end."""
    bindir = Path(sys.executable).parent
    daemon = subprocess.Popen(
        [str(bindir / "intercomd"), "--config", str(config), "--log-level", "warning", "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not _wait_registered(str(bindir / "intercomctl"), control_socket, 30):
            raise SystemExit("intercomd did not register within 30 s")
        time.sleep(2)  # a benchmark's settling time, not a test's wait
        yield daemon
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--emit", action="store_true", help="print the result as one JSON line (python -m benchmarks)")
    ap.add_argument("--mqtt", action="store_true", help="with the MQTT link on, to a local Mosquitto")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="idle-") as tmpdir, contextlib.ExitStack() as stack:
        tmp = Path(tmpdir)
        broker = stack.enter_context(Mosquitto(tmp / "mqtt")) if args.mqtt else None
        with Kamailio(tmp / "kamailio", users={"portao": "portao-secret", "resident": "resident-secret"}) as kam:
            config = _config(tmp, kam, broker.port if broker else None)
            with (
                Baresip(tmp, user="resident", registrar=kam) as phone,
                registered_intercomd(config, tmp / "run" / "control.sock") as daemon,
            ):
                assert phone.proc is not None
                both = sample_processes([daemon.pid, phone.proc.pid], args.seconds)
                ours, theirs = both[daemon.pid], both[phone.proc.pid]
    report: dict[str, Any] = {}
    for label, costs in zip(LABELS, (ours, theirs), strict=True):
        cpu = sum(c.cpu_seconds for c in costs)
        wakeups = sum(c.switches for c in costs)
        report[label] = {
            "cpu_percent": round(100 * cpu / args.seconds, 3),
            "wakeups_per_second": round(wakeups / args.seconds, 2),
            "threads": [asdict(c) for c in costs],
        }
        print(f"{label}: {report[label]['cpu_percent']} % of a core, {report[label]['wakeups_per_second']} wake-ups/s")
        for c in costs:
            print(f"    {c.name:<16} {c.switches / args.seconds:8.2f}/s  {c.cpu_seconds:6.2f} s")
    report["seconds"] = args.seconds
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    if args.emit:
        emit(report)


def idle_figure(seconds: float, errors: list[str]) -> Figure:
    """The idle figure of ``python -m benchmarks`` (group ``idle``): this module run as a child."""
    fig = Figure(
        "fig6b_idle_wakeups",
        "6b. Idle wake-ups, thread by thread, beside baresip",
        target="idle, registered: at most 5 wake-ups/s and 0.1 % of one core for the whole process (issue 18)",
    )
    result = run_child("idle_wakeups", "--seconds", f"{seconds:g}", "--emit", timeout=seconds + 120)
    if "error" in result:
        errors.append(str(result["error"]))
        fig.missing = str(result["error"])
        return fig
    with_mqtt = run_child("idle_wakeups", "--seconds", f"{seconds:g}", "--emit", "--mqtt", timeout=seconds + 120)
    if "error" in with_mqtt:
        errors.append(f"idle with MQTT: {with_mqtt['error']}")
    runs = [("default config", result)] + ([("with MQTT on", with_mqtt)] if "error" not in with_mqtt else [])
    fig.tables.append(
        (
            ["run", "process", "% of one core", "wake-ups/s"],
            [
                [run, k, f"{r[k]['cpu_percent']:.3f}", f"{r[k]['wakeups_per_second']:.2f}"]
                for run, r in runs
                for k in LABELS
            ],
        )
    )
    rows = [
        [run, label, str(t["name"]), f"{t['switches'] / seconds:.2f}", f"{100 * t['cpu_seconds'] / seconds:.3f}"]
        for run, r in runs
        for label in LABELS
        for t in r[label]["threads"]
        if t["switches"] or t["cpu_seconds"]
    ]
    fig.tables.append((["run", "process", "thread", "wake-ups/s", "% of one core"], rows))
    fig.notes += [
        f"Both processes sampled over the same {seconds:g} s, registered at one kamailio, after start-up settled; "
        "a wake-up is a context switch of a thread (/proc/PID/task/*/status). CPU is in clock ticks (10 ms): "
        "a short window cannot show less than one tick.",
        "What still wakes an idle daemon: the SIP owner (`sip-owner`) once a second at most, plus the registrar "
        'probe every failover_seconds / 3 (docs/pjsua2.md, "The owner\'s wait"); the history writer checks its '
        "file every 5 s (a deleted or replaced database is noticed and reported in status); with MQTT on, "
        "aiomqtt's own 1 s loop (paho's keep-alive bookkeeping) on the event loop; under systemd (not here) the "
        "watchdog ping every 5 s (WatchdogSec=10). No media clock, no media "
        "thread and no LED timer run while idle.",
    ]
    return fig


if __name__ == "__main__":
    main()
