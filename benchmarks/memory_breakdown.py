"""Resident memory of a started ``intercomd`` beside an idle baresip, and what holds it (issue 18).

One run: a local kamailio, ``intercomd run`` on the idle benchmark's config (mock pins, registered, prompts in
a fresh cache: :mod:`benchmarks.idle_wakeups`) and a registered baresip; once both are registered and start-up
settled, VmRSS and PSS/USS (``/proc/PID/smaps_rollup``) of both, and the daemon's largest mappings
(``/proc/PID/smaps``). Then, each in a fresh child process so that nothing is shared:

* imports: VmRSS of a bare interpreter and after importing each heavy package alone, and which of them
  ``import daemon.app`` loads; ``python -X importtime -c 'import daemon.app'`` summed by top-level package;
* pjsua2: VmRSS after import, ``libCreate``, ``libInit`` (maxCalls 8, the config default) and
  ``libStart`` with a UDP transport (pjlib's pools);
* the running app in-process under tracemalloc (``daemon.app.running`` on the same config): Python's
  allocations at READY, top files (the prompt cache's PCM is Python bytes, so it shows here).

    python -m benchmarks.memory_breakdown [--no-traced] [--emit]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._proc import ROOT, child_env, emit, run_child, smaps_rollup
from benchmarks.idle_wakeups import _config, registered_intercomd
from benchmarks.report import Figure, console

__all__ = ["HEAVY", "main", "memory_figure", "smaps_rollup", "top_mappings"]

# The packages the issue names, plus ssl (OpenSSL) which aiomqtt and a TLS config check pull in, and what two of
# them bring: gpiozero imports importlib.metadata at its top (gpiozero/devices.py), and the speaker initializes
# PortAudio at start (hw/speaker.py: the probe and the device are found before the first prompt), which loads JACK.
HEAVY = (
    "pjsua2",
    "numpy",
    "gpiozero",
    "importlib.metadata",
    "anyio",
    "pyaudio",
    "sqlite3",
    "aiomqtt",
    "ssl",
    "daemon.app",
)
TITLE = "9a. Memory after start and after the visits, beside baresip, and what holds it"
PORTAUDIO_INITIALIZED = "pyaudio; PortAudio initialized"
_PORTAUDIO_CODE = ", pyaudio; pyaudio.PyAudio()"
_RSS_CODE = (
    "import sys, json{imp}\n"
    "rss = int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])\n"
    "print(json.dumps({{'rss_kb': rss, 'modules': sorted({{m.split('.')[0] for m in sys.modules}})}}))"
)
_PJ_STAGES = """
import json, pjsua2 as pj
def rss():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])
out = {"import pjsua2": rss()}
ep = pj.Endpoint(); ep.libCreate(); out["libCreate"] = rss()
cfg = pj.EpConfig(); cfg.uaConfig.maxCalls = 8; cfg.uaConfig.threadCnt = 0; cfg.uaConfig.mainThreadOnly = True
cfg.medConfig.sndAutoCloseTime = 0; cfg.logConfig.level = 0; cfg.logConfig.consoleLevel = 0
ep.libInit(cfg); out["libInit"] = rss()
t = pj.TransportConfig(); t.port = 0; t.boundAddress = "127.0.0.1"
ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, t); ep.libStart(); ep.audDevManager().setNullDev()
out["libStart + UDP transport + null sound device"] = rss()
print(json.dumps(out))
ep.libDestroy()
"""


def top_mappings(pid: int, top: int = 10) -> list[tuple[str, int]]:
    """Resident kB per mapped file (anonymous memory and the heap grouped by kind), largest first."""
    rss: collections.Counter[str] = collections.Counter()
    name = "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", head[0]):
            name = Path(head[5]).name if len(head) > 5 and head[5].startswith("/") else " ".join(head[5:]) or "[anon]"
        elif head and head[0] == "Rss:":
            rss[name] += int(head[1])
    return rss.most_common(top)


def _python(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    environ = child_env(**(env or {}))
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=True, env=environ
    )


def import_rss() -> dict[str, Any]:
    """VmRSS of a bare interpreter, after each heavy package alone, and the top-level packages daemon.app loads."""
    out: dict[str, Any] = {}
    for name in ("", *HEAVY, PORTAUDIO_INITIALIZED):
        imp = _PORTAUDIO_CODE if name == PORTAUDIO_INITIALIZED else f", {name}" if name else ""
        try:
            done = _python("-c", _RSS_CODE.format(imp=imp), env={"JACK_NO_START_SERVER": "1"})
        except subprocess.CalledProcessError as exc:  # e.g. numpy not installed
            out[name] = {"error": exc.stderr.strip().splitlines()[-1]}
            continue
        out[name or "bare interpreter"] = json.loads(done.stdout)
    return out


def import_times(top: int = 10) -> list[tuple[str, float, float]]:
    """(top-level package, self ms summed, the largest cumulative ms of one of its modules) of ``import daemon.app``."""
    done = _python("-X", "importtime", "-c", "import daemon.app")
    self_us: collections.Counter[str] = collections.Counter()
    cumulative: dict[str, int] = {}
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        package = parts[2].strip().split(".")[0]
        self_us[package] += int(parts[0])
        cumulative[package] = max(cumulative.get(package, 0), int(parts[1]))
    return [(p, us / 1000, cumulative[p] / 1000) for p, us in self_us.most_common(top)]


def pjsua2_stages() -> dict[str, int]:
    return dict(json.loads(_python("-c", _PJ_STAGES).stdout.splitlines()[-1]))


def traced_child(config: Path, top: int) -> None:
    """In this process: the app under tracemalloc, Python's allocations at READY (one JSON line)."""
    import gc
    import tracemalloc

    import anyio

    from daemon.app import running
    from daemon.config import load_config

    cfg, _warnings = load_config(config)
    tracemalloc.start()

    async def measure() -> dict[str, Any]:
        async with running(cfg):
            gc.collect()
            snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
            root = str(ROOT) + "/"
            stats = snap.statistics("filename")
            return {
                "traced_kb": sum(s.size for s in stats) // 1024,
                "rss_kb": smaps_rollup(os.getpid())["rss_kb"],
                "top": [
                    (s.traceback[0].filename.replace(root, "").split("site-packages/")[-1], s.size // 1024, s.count)
                    for s in stats[:top]
                ],
            }

    emit(anyio.run(measure))


def app_through_visits(visits: int) -> dict[str, Any]:
    """Figure 5a's harness (the whole app in one process, :mod:`benchmarks.app_bench`) through ``visits`` visits:
    its VmRSS/PSS/USS after start (and one warm-up visit) and after the visits."""
    r = run_child("app_bench", "--presses", str(visits), "--idle-seconds", "0", timeout=max(600, visits * 3))
    if "error" in r:
        return {"error": r["error"]}
    opened = sum(1 for v in r["visits"] if v["opened"] is not None)
    return {"visits": len(r["visits"]), "opened": opened, "before": r["memory_before"], "after": r["memory_after"]}


def run(tmp: Path, traced: bool, visits: int = 0) -> dict[str, Any]:
    from daemon.simulation.phone import Baresip
    from tests.support.peers import Kamailio

    result: dict[str, Any] = {}
    with Kamailio(tmp / "kamailio", users={"portao": "portao-secret", "resident": "resident-secret"}) as kam:
        config = _config(tmp, kam, None)
        with Baresip(tmp, user="resident", registrar=kam) as phone:
            assert phone.proc is not None
            with registered_intercomd(config, tmp / "run" / "control.sock") as daemon:
                result["intercomd"] = smaps_rollup(daemon.pid)
                result["baresip"] = smaps_rollup(phone.proc.pid)
                result["threads"] = len(os.listdir(f"/proc/{daemon.pid}/task"))
                result["mappings"] = top_mappings(daemon.pid)
            if visits:  # the daemon stopped, baresip still idle beside the app: read again after the visits
                result["app_visits"] = app_through_visits(visits)
                result["baresip_after"] = smaps_rollup(phone.proc.pid)
        if traced:  # the same config on a fresh SIP port, the daemon gone (its RTP port is free again)
            traced_tmp = tmp / "traced"
            traced_tmp.mkdir()
            try:
                done = _python(
                    "-m", "benchmarks.memory_breakdown", "--traced", str(_config(traced_tmp, kam, None)), timeout=180
                )
                result["traced"] = json.loads(done.stdout.splitlines()[-1])
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:  # the rest of the run stands
                result["traced_error"] = " | ".join(str(exc.stderr or exc).strip().splitlines()[-3:])
    result["imports"] = import_rss()
    result["import_ms"] = import_times()
    result["pjsua2"] = pjsua2_stages()
    result["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
    return result


def _mb(kb: float) -> str:
    return f"{kb / 1024:.1f}"


def _visits_table(r: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The whole app (figure 5a's harness) after start and after the visits, and baresip at the same moments."""
    a = r["app_visits"]
    headers = ["process, moment", "VmRSS MB", "PSS MB", "USS MB", "anonymous MB"]
    if "error" in a:
        return headers, [["app through the visits", "error", a["error"][:200], "", ""]]

    def row(label: str, m: dict[str, int]) -> list[str]:
        return [label, _mb(m["rss_kb"]), _mb(m["pss_kb"]), _mb(m["uss_kb"]), _mb(m["anon_kb"])]

    n = f"{a['visits']} visits ({a['opened']} opened the door)"
    return headers, [
        row("app (one process, figure 5a's harness), after start and one visit", a["before"]),
        row(f"app, after {n}", a["after"]),
        [
            "app, growth over the visits",
            *(f"{(a['after'][k] - a['before'][k]) / 1024:+.2f}" for k in ("rss_kb", "pss_kb", "uss_kb", "anon_kb")),
        ],
        row("baresip, idle, before the visits", r["baresip"]),
        row("baresip, idle, after the visits", r["baresip_after"]),
    ]


def _import_notes(imports: dict[str, Any]) -> list[str]:
    """What two of the imports cost and why they stay (measured in this run)."""
    notes = []

    def over(a: str, b: str) -> str | None:
        if "rss_kb" in imports.get(a, {}) and "rss_kb" in imports.get(b, {}):
            return f"{(imports[a]['rss_kb'] - imports[b]['rss_kb']) / 1024:.1f}"
        return None

    if (mb := over("importlib.metadata", "bare interpreter")) is not None:
        notes.append(
            f"importlib.metadata alone: {mb} MB over a bare interpreter. gpiozero imports it at the top of "
            "gpiozero/devices.py (to look pin factories up by entry point), and every device class the panel uses "
            "comes through that module: the daemon cannot leave it out without patching gpiozero."
        )
    if (mb := over(PORTAUDIO_INITIALIZED, "pyaudio")) is not None:
        notes.append(
            f"Initializing PortAudio (`pyaudio.PyAudio()`, which loads Debian's JACK host API and ALSA's "
            f"configuration) adds {mb} MB to `import pyaudio`. The speaker does it at start on purpose "
            "(hw/speaker.py: PortAudio is probed in a child and the device found before the first prompt, so the "
            "first prompt does not pay up to the probe's time, and the log says at start whether there is a "
            "speaker): deferring the import to the first prompt would save nothing at READY, and would move that "
            "cost onto figure 2's press -> first sample. Kept as it is."
        )
    return notes


def figure_from(r: dict[str, Any]) -> Figure:
    fig = Figure(
        "fig9a_memory",
        TITLE,
        target="resident memory after start and after 1,000 visits beside baresip's; find what holds it (issue 18)",
    )
    fig.tables.append(
        (
            ["process", "VmRSS MB", "PSS MB", "USS MB", "anonymous MB"],
            [
                [k, _mb(r[k]["rss_kb"]), _mb(r[k]["pss_kb"]), _mb(r[k]["uss_kb"]), _mb(r[k]["anon_kb"])]
                for k in ("intercomd", "baresip")
            ],
        )
    )
    if "app_visits" in r:
        fig.tables.append(_visits_table(r))
    fig.tables.append((["intercomd mapping", "resident MB"], [[name, _mb(kb)] for name, kb in r["mappings"]]))
    imports = r["imports"]
    bare = imports["bare interpreter"]["rss_kb"]
    loaded = set(imports.get("daemon.app", {}).get("modules", ()))
    fig.tables.append(
        (
            ["import alone (fresh process)", "VmRSS MB", "over a bare interpreter MB", "loaded by import daemon.app"],
            [
                [name, _mb(v["rss_kb"]), _mb(v["rss_kb"] - bare), "yes" if name.split(".")[0] in loaded else "no"]
                if "rss_kb" in v
                else [name, "-", "-", v["error"]]
                for name, v in imports.items()
            ],
        )
    )
    fig.tables.append(
        (
            ["package (import daemon.app)", "own import ms", "largest cumulative ms"],
            [[p, f"{s:.1f}", f"{c:.1f}"] for p, s, c in r["import_ms"]],
        )
    )
    pj_rows, prev = [], bare
    for stage, kb in r["pjsua2"].items():
        pj_rows.append([stage, _mb(kb), f"{(kb - prev) / 1024:+.1f}"])
        prev = kb
    fig.tables.append((["pjsua2 stage (fresh process)", "VmRSS MB", "step MB"], pj_rows))
    if "traced_error" in r:
        fig.notes.append(f"The tracemalloc run failed: {r['traced_error']}")
    if "traced" in r:
        t = r["traced"]
        fig.tables.append(
            (
                ["Python allocations at READY, by file (tracemalloc)", "kB", "blocks"],
                [["all traced", str(t["traced_kb"]), "-"], *[[f, str(kb), str(n)] for f, kb, n in t["top"]]],
            )
        )
    fig.notes += _import_notes(imports)
    fig.notes.append(
        f"Load average during the run: {' '.join(r['loadavg'])} (2 cores shared with other jobs). intercomd had "
        f"{r['threads']} threads. PSS splits shared pages between the processes mapping them; USS is what "
        "stopping the process would free."
    )
    return fig


def memory_figure(errors: list[str]) -> Figure:
    """The memory figure of ``python -m benchmarks`` (group ``memory``): this module run as a child."""
    result = run_child("memory_breakdown", "--emit", timeout=3600)  # 1,000 visits take ~10 min here
    if "error" in result:
        errors.append(str(result["error"]))
        return Figure("fig9a_memory", TITLE, missing=result["error"])
    return figure_from(result)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-traced", action="store_true", help="skip the in-process tracemalloc run")
    ap.add_argument("--emit", action="store_true", help="print the result as one JSON line (python -m benchmarks)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--traced", type=Path, help=argparse.SUPPRESS)  # the child: the app in-process on this config
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--visits", type=int, default=1000, help="visits through the whole app beside baresip (0: none)")
    args = ap.parse_args()
    if args.traced:
        traced_child(args.traced, args.top)
        return
    with tempfile.TemporaryDirectory(prefix="memory-") as tmpdir:
        result = run(Path(tmpdir), not args.no_traced, args.visits)
    print(console([figure_from(result)]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    if args.emit:
        emit(result)


if __name__ == "__main__":
    main()
