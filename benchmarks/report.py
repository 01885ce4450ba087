"""Turns measured figures into text: the console summary, docs/benchmarks.md and docs/img/*.png.

A :class:`Figure` holds raw samples per series and per repeat run; everything printed (medians, p99,
spread across runs, ratios) is computed here from those samples, so no number is typed in by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._stats import summarize

__all__ = ["Figure", "Series", "write_report"]


@dataclass
class Series:
    """One line of a latency table: samples (ms) from each repeat run of one design/path."""

    label: str
    runs: list[list[float]] = field(default_factory=list)

    @property
    def samples(self) -> list[float]:
        return [x for run in self.runs for x in run]

    def row(self) -> list[str]:
        s = summarize(self.samples)
        medians = [summarize(r)["median"] for r in self.runs if r]
        p99s = [summarize(r)["p99"] for r in self.runs if r]
        spread = (
            f"{_ms(min(medians))}-{_ms(max(medians))} / {_ms(min(p99s))}-{_ms(max(p99s))}"
            if len(medians) > 1
            else "one run"
        )
        return [self.label, str(s["n"]), str(len(self.runs)), _ms(s["median"]), _ms(s["p99"]), _ms(s["max"]), spread]


@dataclass
class Figure:
    key: str
    title: str
    target: str = ""
    series: list[Series] = field(default_factory=list)
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing: str = ""  # why this figure could not be measured (shown instead of numbers)

    def add(self, label: str, samples: list[float]) -> None:
        for s in self.series:
            if s.label == label:
                s.runs.append(list(samples))
                return
        self.series.append(Series(label, [list(samples)]))

    def get(self, label: str) -> Series | None:
        return next((s for s in self.series if s.label == label), None)


LATENCY_HEADERS = ["series", "samples", "runs", "median ms", "p99 ms", "max ms", "spread of run medians / p99s (ms)"]


def _ms(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def ratio(baseline: float, ours: float) -> str:
    """baseline / ours, as "x times": > 1 means ours is smaller (better for latencies and footprints)."""
    if ours is None or baseline is None or math.isnan(ours) or math.isnan(baseline):
        return "n/a"
    if ours == 0:
        return "ours 0" if baseline else "both 0"
    return f"{baseline / ours:.1f}x"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def _plot(fig: Figure, img_dir: Path) -> str | None:
    """A CDF per series (log x: medians and tails of very different sizes share one axis)."""
    series = [s for s in fig.series if s.samples]
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    for s in series:
        xs = sorted(x if x > 0 else 1e-4 for x in s.samples)
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        ax.step(xs, ys, where="post", label=f"{s.label} (n={len(xs)})")
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds (log scale)")
    ax.set_ylabel("fraction of samples")
    ax.set_title(fig.title, fontsize=9)
    ax.axhline(0.99, color="grey", lw=0.5, ls=":")
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=7, loc="lower right")
    f.tight_layout()
    path = img_dir / f"{fig.key}.png"
    f.savefig(path)
    plt.close(f)
    return path.name


def console(figures: list[Figure]) -> str:
    lines: list[str] = []
    for fig in figures:
        lines.append(f"\n== {fig.title}" + (f"  [target: {fig.target}]" if fig.target else ""))
        if fig.missing:
            lines.append(f"   NOT MEASURED: {fig.missing}")
        for s in fig.series:
            r = s.row()
            lines.append(f"   {r[0]:<52} n={r[1]:>5}  median {r[3]:>8} ms  p99 {r[4]:>8} ms  max {r[5]:>8} ms")
        for headers, rows in fig.tables:
            lines.append("   " + " | ".join(headers))
            lines += ["   " + " | ".join(str(c) for c in row) for row in rows]
        lines += [f"   note: {n}" for n in fig.notes]
    return "\n".join(lines)


def _machine_caveat(m: dict[str, Any]) -> str:
    if "raspberry" in str(m["cpu"]).lower():
        return "Measured on the target hardware."
    return (
        f"This machine ({m['cores']} cores, {m['arch']}) is not a Raspberry Pi: absolute numbers on a Pi will "
        "be larger; the ratios between designs measured in the same run are the comparable part."
    )


def write_report(path: Path, img_dir: Path, figures: list[Figure], meta: dict[str, Any]) -> None:
    img_dir.mkdir(parents=True, exist_ok=True)
    m = meta["machine"]
    command = f"python -m benchmarks {meta['argv']}".strip()
    out = [
        "# Benchmarks",
        "",
        f"Generated by `{command}` ({meta['profile']} profile) on {meta['date']}, "
        f"in {meta['seconds']:.0f} s. Do not edit: run `./dev.sh bench` again.",
        "",
        "Every number below was measured in this run; nothing is copied in. Latency tables give the median and",
        "p99 (nearest rank) over all samples of all repeat runs, and the spread of the per-run medians and p99s.",
        "Targets are what the issue asked for; a missed target is reported, never an error.",
        "",
        "## Machine",
        "",
        *_table(
            ["cpu", "cores", "kernel", "arch", "python", "pjsua2", "anyio", "gpiozero"],
            [[m["cpu"], m["cores"], m["kernel"], m["arch"], m["python"], m["pjsua2"], m["anyio"], m["gpiozero"]]],
        ),
        "",
        _machine_caveat(m),
        "",
        "## The two designs",
        "",
        "* **ours**: one anyio loop; pjsua2 only on the SIP engine's owner thread; callbacks post frozen events",
        "  through `daemon.bridge.LoopBridge`; commands go through a queue and wake the owner's poll.",
        "* **baseline** (`benchmarks/baseline_threaded.py`, not product code): the replaced system's fix for",
        "  \"There is no current event loop in thread 'Dummy-1'\": pjsua2 with `threadCnt=1`, every callback starts",
        "  `threading.Thread(target=lambda: asyncio.run(handler(...)))`, a scheduled hang-up is",
        "  `asyncio.run(sleep(delay); call.hangup())` in a thread of its own holding the `Call`. Each such thread",
        "  must call `libRegisterThread` first or pjlib aborts the process; the original called pjsua2 from them.",
        "  DoorPi's event bus (a new thread per event) has the same shape and is modelled by the same code.",
        "* pjsua2 allows one Endpoint per process: each side runs in its own subprocess against the same far end",
        "  (`benchmarks/far_end.py`, a pjsua2 UAS in a third process on 127.0.0.1).",
        "",
    ]
    for fig in figures:
        out += [f"## {fig.title}", ""]
        if fig.target:
            out += [f"Target: {fig.target}", ""]
        if fig.missing:
            out += [f"**Not measured:** {fig.missing}", ""]
        if fig.series:
            out += [*_table(LATENCY_HEADERS, [s.row() for s in fig.series]), ""]
        for headers, rows in fig.tables:
            out += [*_table(headers, rows), ""]
        out += [f"- {n}" for n in fig.notes]
        if fig.notes:
            out.append("")
        image = _plot(fig, img_dir)
        if image:
            out += [f"![{fig.title}](img/{image})", ""]
    if meta.get("errors"):
        out += ["## Errors during the run", "", *[f"- {e}" for e in meta["errors"]], ""]
    path.write_text("\n".join(out), encoding="utf-8")
