"""Figure 9b from a :mod:`benchmarks.cpu_quota` result: tables and the notes that read them (every number computed
here from the samples; nothing typed in)."""

from __future__ import annotations

from typing import Any

from benchmarks._stats import summarize
from benchmarks.press_stages import ROW_ORDER, STAGES, stage_rows
from benchmarks.report import Figure

__all__ = ["SLICE_LABEL", "TITLE", "figure_from"]

TITLE = "9b. Under a Pi-sized CPU quota: start -> READY, figures 1, 2, 4 and the ring group of 8"
TARGET = (
    "under the quota: press -> INVITE p99 < 10 ms; READY < 5 s with a warm prompt cache; figure 2's 30 ms (issue 18)"
)
INVITE_TARGET_MS, READY_TARGET_S, PROMPT_TARGET_MS = 10.0, 5.0, 30.0


def _row(label: str, samples: list[float], digits: int) -> list[str]:
    if not samples:
        return [label, "0", "-", "-", "-"]
    s = summarize(samples)
    return [label, str(s["n"]), f"{s['median']:.{digits}f}", f"{s['p99']:.{digits}f}", f"{s['max']:.{digits}f}"]


SLICE_LABEL = "quota, 1 ms slice"  # benchmarks.cpu_quota's row with kernel.sched_cfs_bandwidth_slice_us at 1 ms
HEAP_LABEL = "quota, heap unsettled"  # benchmarks.cpu_quota's row with app_bench --heap unsettled (daemon.heap)


def _where(label: str, pct: str) -> str:
    if label == SLICE_LABEL:
        return f"{pct}, CFS bandwidth slice 1 ms"
    if label == HEAP_LABEL:
        return f"{pct}, heap not settled at READY (the daemon before)"
    return "no quota" if label == "no quota" else pct


def _ready_table(r: dict[str, Any], pct: str) -> tuple[list[str], list[list[str]]]:
    rows = [_row("intercomd start -> READY, cold prompt cache, no quota", [r["ready_cold_s"]], 2)]
    if "ready_cold_quota_s" in r:
        rows.append(_row(f"intercomd start -> READY, cold prompt cache, {pct}", [r["ready_cold_quota_s"]], 2))
    for label, samples in r["ready_s"].items():
        rows.append(_row(f"intercomd start -> READY, warm cache, {_where(label, pct)}", samples, 2))
        if label in r.get("import_s", {}):
            what = "of which python -c 'import daemon.app, pjsua2', no .pyc (this environment)"
            rows.append(_row(f"{what}, {_where(label, pct)}", r["import_s"][label], 2))
        if label in r.get("import_cached_s", {}):
            what = "python -c 'import daemon.app, pjsua2' with .pyc files (an installed panel)"
            rows.append(_row(f"{what}, {_where(label, pct)}", r["import_cached_s"][label], 2))
    return ["series (s)", "starts", "median s", "p99 s", "max s"], rows


def _stages_table(r: dict[str, Any], pct: str) -> tuple[list[str], list[list[str]]]:
    """Seconds per start-up stage (median over the starts), warm and cold, with and without the quota."""
    columns = [k for k in r["stages"] if any(isinstance(s, dict) for s in r["stages"][k])]
    names: list[str] = []
    for key in columns:
        for start in r["stages"][key]:
            if isinstance(start, dict):
                names += [n for n in start if n not in names]
    rows = []
    for name in [*names, "total"]:
        cells = [name]
        for key in columns:
            starts = [s for s in r["stages"][key] if isinstance(s, dict)]
            values = [sum(s.values()) if name == "total" else s.get(name, 0.0) for s in starts]
            cells.append(f"{summarize(values)['median']:.3f}" if values else "-")
        rows.append(cells)
    headers = ["start-up stage (s, median)", *(k.replace("quota", pct) if "no quota" not in k else k for k in columns)]
    return headers, rows


def _latency_table(r: dict[str, Any], pct: str) -> tuple[list[str], list[list[str]]]:
    rows = []
    series = (
        ("ours_ms", "fig 1, ours: press qualified -> INVITE"),
        ("baseline_ms", "fig 1, baseline: edge -> INVITE"),
        ("prompt_ms", "fig 2, ours: press qualified -> first prompt buffer in ALSA"),
        ("dtmf_ms", "fig 4, ours: far end's dialDtmf -> relay pin high"),
    )
    for label, runs in r["press"].items():
        for key, name in series:
            error = runs.get("baseline_error" if key == "baseline_ms" else "ours_error")
            if error:
                rows.append([f"{name}, {_where(label, pct)}", "error", error[:200], "", ""])
            elif key in runs:
                rows.append(_row(f"{name}, {_where(label, pct)}", runs[key], 3))
    return ["series (ms)", "samples", "median ms", "p99 ms", "max ms"], rows


def _path_table(r: dict[str, Any], pct: str) -> tuple[list[str], list[list[str]]]:
    """The press path, stage by stage: when each stage ran after the qualifying moment, with and without the quota."""
    # By stage name: a run in which a stage never ran (no press went through the outbox) has no row for it.
    by_label = {
        label: {row[0]: row for row in stage_rows(runs["stages"])}
        for label, runs in r["press"].items()
        if runs.get("stages")
    }
    if not by_label:
        return ["stage"], []
    labels = list(by_label)
    rows = []
    for name in ROW_ORDER:
        if not any(name in by_label[label] for label in labels):
            continue
        cells = [name]
        for label in labels:
            row = by_label[label].get(name, ["", "", "-", "-", "-"])
            cells += [f"{row[2]} / {row[3]}", row[4]]
        rows.append(cells)
    headers = ["stage of the press path (press qualified = 0)"]
    for label in labels:
        where = _where(label, pct)
        headers += [f"{where}: ms after, median / p99", f"{where}: process CPU ms since the edge, median"]
    return headers, rows


def _gc_table(r: dict[str, Any], pct: str) -> tuple[list[str], list[list[str]]]:
    """The measured process's garbage collections during the presses: a collection holds the GIL, every thread waits."""
    rows = []
    for label, runs in r["press"].items():
        g = runs.get("gc")
        if g:
            rows.append(
                [
                    _where(label, pct),
                    f"{runs.get('heap_frozen', 0):,}",
                    str(g["collections"]),
                    str(g["full"]),
                    f"{g['longest_full_ms']:.1f}",
                    f"{g['longest_ms']:.1f}",
                    f"{g['total_ms']:.1f}",
                ]
            )
    headers = [
        "CPU (figure 1's presses)",
        "objects frozen at READY",
        "collections",
        "full (generation 2)",
        "longest full, wall ms",
        "longest any, wall ms",
        "all, wall ms",
    ]
    return headers, rows


def _group_table(r: dict[str, Any], pct: str) -> tuple[list[str], list[list[str]]]:
    rows = []
    for label, g in r.get("group", {}).items():
        if "error" in g:
            rows.append([_where(label, pct), "error", g["error"][:200], "", "", "", "", "", ""])
            continue
        for size, s in g["sizes"].items():
            rang = f"{min(s['rang'])}-{max(s['rang'])}" if s["rang"] else "?"
            inv = summarize(s["invite_ms"])
            rows.append(
                [
                    _where(label, pct),
                    f"{size}" + (" (baseline)" if size == "4" else ""),
                    f"{g['calls']} at {g['rate']}/s",
                    str(s["presses"]),
                    str(s["served"]),
                    rang,
                    str(s["failed"]),
                    f"{inv['median']:.3f}" if s["invite_ms"] else "-",
                    f"{inv['p99']:.3f}" if s["invite_ms"] else "-",
                ]
            )
    headers = [
        "CPU",
        "ring group (parallel legs)",
        "sipp calls",
        "presses",
        "served (door opened)",
        "legs that rang (min-max)",
        "legs failed",
        "press qualified -> INVITE median ms",
        "p99 ms",
    ]
    return headers, rows


def _verdict(figure: float, target: float) -> str:
    return "met" if figure < target else "NOT met"


def _verdicts(r: dict[str, Any], pct: str) -> list[str]:
    notes = []
    q, free = r["press"].get("quota", {}), r["press"].get("no quota", {})
    if q.get("ours_ms"):
        o, b = summarize(q["ours_ms"]), summarize(q.get("baseline_ms") or [float("nan")])
        met = _verdict(o["p99"], INVITE_TARGET_MS)
        line = (
            f"Press qualified -> INVITE under the quota, ours: median {o['median']:.1f} ms, p99 {o['p99']:.1f} ms over "
            f"{o['n']} presses (target p99 {INVITE_TARGET_MS:g} ms: {met}); the baseline under the same quota: median "
            f"{b['median']:.1f} ms, p99 {b['p99']:.1f} ms (DoorPi's 50 ms tick either way)."
        )
        if free.get("ours_ms"):
            f = summarize(free["ours_ms"])
            line += f" Without the quota in the same run: median {f['median']:.1f} ms, p99 {f['p99']:.1f} ms."
        notes.append(line)
    if q.get("prompt_ms"):
        p = summarize(q["prompt_ms"])
        met = _verdict(p["p99"], PROMPT_TARGET_MS)
        notes.append(
            f"Figure 2 under the quota: press qualified -> first prompt buffer median {p['median']:.1f} ms, p99 "
            f"{p['p99']:.1f} ms (figure 2's target p99 {PROMPT_TARGET_MS:g} ms, edge to buffer less the hold: {met})."
        )
    if (stages := q.get("stages")) and all(key in p for p in stages for key in ("check",)):
        sent = [p["cpu_to_invite_ms"] - p["check"][1] for p in stages if p.get("cpu_to_invite_ms") is not None]
        if sent:
            s = summarize(sent)
            budget = r["quota"] * r["period_us"] / 1000
            notes.append(
                f"CPU the whole process spent from the qualifying moment to makeCall's return, under the quota: median "
                f"{s['median']:.2f} ms, p99 {s['p99']:.2f} ms, against the quota's {budget:g} ms per period: a press "
                "whose path needs more than what is left of the period's budget waits for the next period."
            )
    sliced = r["press"].get(SLICE_LABEL, {})
    if sliced.get("ours_ms"):
        o = summarize(sliced["ours_ms"])
        met = _verdict(o["p99"], INVITE_TARGET_MS)
        notes.append(
            f"The same quota with kernel.sched_cfs_bandwidth_slice_us at {r.get('slice_row_us', 1000)} instead of the "
            f"kernel default {r.get('slice_us')} (set for that run only, restored after; rows 'CFS bandwidth slice 1 "
            f"ms'): press qualified -> INVITE median {o['median']:.1f} ms, p99 {o['p99']:.1f} ms over {o['n']} presses "
            f"(target: {met}). CFS bandwidth hands the cgroup's runtime to each CPU in slices of that size; at the "
            "default, more than this quota's 2.5 ms per period, the first CPU to ask holds the whole period's budget "
            "and a thread of the process woken on the other CPU (the SIP owner woken by the loop, a writer thread) is "
            "throttled with budget left (benchmarks.press_sched traces it press by press). A Pi has no quota and no "
            "cross-CPU runtime pool: the default-slice row is the figure, this row says how much of it is that pool."
        )
    warm = r["ready_s"].get("quota")
    if warm:
        w = summarize(warm)
        met = _verdict(w["max"], READY_TARGET_S)
        notes.append(f"READY with a warm prompt cache under the quota: at most {w['max']:.1f} s (target 5 s): {met}.")
    return notes


def _logging_note(r: dict[str, Any]) -> str:
    """How the daemon logged during figures 1, 2 and 4, and what the journal stand-in received."""
    mode = r.get("logging", "none")
    if mode == "none":
        return (
            "Logging in figures 1, 2 and 4: none (no handler: nothing at INFO formatted or written; production logs "
            "INFO to the journal, --logging journal)."
        )
    got = []
    for label, runs in r["press"].items():
        j = runs.get("journal") or {}
        if "datagrams" in j:
            got.append(
                f"{_where(label, 'quota')}: {j['datagrams']} datagrams, {j['stream_lines']} stream lines "
                f"({(j['datagram_bytes'] + j['stream_bytes']) / 1024:.0f} KiB)"
            )
    how = "journald's native protocol" if mode == "journal" else "journal-formatted lines on its stderr"
    return (
        f"Logging in figures 1, 2 and 4: as in production, INFO through the daemon's own set-up "
        f"(daemon.service.setup_logging under $JOURNAL_STREAM), in {how}, to a reader process standing in for "
        f"journald (benchmarks._journal_sink, outside the cgroup as journald is outside the daemon's); it received "
        + ("; ".join(got) or "nothing")
        + "."
    )


def figure_from(r: dict[str, Any]) -> Figure:
    pct = f"{100 * r['quota']:g} % of one core per {r['period_us'] / 1000:g} ms"
    fig = Figure("fig9b_quota", TITLE, target=TARGET)
    if r.get("ready_s"):
        fig.tables.append(_ready_table(r, pct))
    if r.get("stages"):
        fig.tables.append(_stages_table(r, pct))
    fig.tables.append(_latency_table(r, pct))
    fig.tables.append(_path_table(r, pct))
    if any(runs.get("gc") for runs in r["press"].values()):
        fig.tables.append(_gc_table(r, pct))
        fig.notes.append(
            "Garbage collections: each one holds the GIL, so no thread of the process runs until it ends; under the "
            "quota its wall time stretches over the periods it spans. intercomd settles its heap at READY "
            "(daemon.heap: one collection, then gc.freeze: what start-up left alive is never walked again); the "
            "'heap not settled' row is the same harness with that step left out, run under the same quota here."
        )
    if r.get("group"):
        fig.tables.append(_group_table(r, pct))
    cg = r.get("cgroup", {})
    press_cg = r.get("press_cgroup", {})
    fig.notes += _verdicts(r, pct)
    fig.notes.append(_logging_note(r))
    if r.get("cpu") is not None:
        fig.notes.append(
            f"Figures 1, 2, 4 and the ring group under the quota: the measured process pinned to CPU {r['cpu']} "
            "(cpu_quota --cpu): the quota acts as one slower core (the starts are not pinned)."
        )
    fig.notes += [
        f"cgroup v{cg.get('version', '?')} CPU quota, {pct}; the quota throttled {cg.get('nr_throttled', '?')} of "
        f"{cg.get('nr_periods', '?')} periods during the starts, {press_cg.get('nr_throttled', '?')} of "
        f"{press_cg.get('nr_periods', '?')} during the presses. Load average at the end: {' '.join(r['loadavg'])} "
        "(2 x86 cores shared with other jobs).",
        "A quota approximates a slower CPU; it does not replace a Pi. The process runs at this machine's full speed "
        "until its budget for the period is spent, then waits for the next period: latency grows in steps of up to "
        "one period, not smoothly as on a slower core, and caches, memory and storage are this machine's.",
        "Figures 1, 2 and 4: one run of figure 1's harness (benchmarks.app_bench, the whole app in one process) "
        "through benchmarks.press_stages, which stamps the press path's stages (monotonic time and the process's "
        "CPU time) from outside the product code; the baseline's edge -> INVITE includes DoorPi's 50 ms polling tick, "
        "ours excludes the 50 ms min_press_ms hold. Only the measured process is in the cgroup: kamailio, the far end, "
        "sipp, the journal's stand-in and the relay process that stamps the INVITE run outside it (benchmarks._wire: "
        "the stamp is the kernel's arrival time of the INVITE on the relay's socket, SO_TIMESTAMPNS, so neither a "
        "throttled thread of the measured process nor the relay's own wait for a CPU on a shared machine delays it). "
        "The press driver stays inside: it polls the relay pin every 5 ms on the app's loop during each visit (from "
        "30 ms after the qualifying moment), and its lag probe wakes the loop 100 times a second, harness costs a "
        "real panel does not have; benchmarks.press_sched found the runtime charged to the process in the quota "
        "period before a press small beside the path's (160 presses: median 0, 9 in 10 under 0.3 ms), so they are "
        "left as they are.",
        "The ring group: figure 7's harness (app_bench's load phase): sipp calls the panel from callers it refuses "
        "while each press rings a parallel group (the far end answers, the other legs ring at a second sipp), the "
        "group of 8 and the baseline group of 4 in turn. The start-up stages: benchmarks.start_stages, the daemon's "
        "start in one process with each stage's method stamped on entry and exit; 'between' rows are the time "
        "between two stamped stages (the event-log writer, the lockouts file).",
        "Stages of the press path: " + "; ".join(f"'{what}' is {cls}.{method}" for _k, what, cls, method in STAGES),
    ]
    return fig
