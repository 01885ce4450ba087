"""Memory over visits: the whole app in-process, N visits (answer + right code), memory sampled every K visits.

Not a test. One process runs ``daemon.app.running(config, pin_factory=MockFactory())`` with the real SIP engine
(pjsua2), the speaker (PortAudio into an ALSA ``null`` PCM) and the prompt cache; a baresip resident (from
:mod:`daemon.simulation.phone`) answers and types the code. Each sample (after ``gc.collect()``):

* RSS (``/proc/self/statm``) and RssAnon (``/proc/self/status``), then the same after ``malloc_trim(0)``
  (with ``--trim``): what trim gives back is free memory glibc held, i.e. fragmentation/retention, not a leak;
* glibc ``mallinfo2()``: bytes in use by malloc (``uordblks`` + ``hblkhd``) and free bytes it keeps (``fordblks``);
* with ``--tracemalloc``: Python's traced total, and at the end the top growth by line (snapshot after the
  warm-up sample vs the last one);
* live objects by type (``gc.get_objects()``), growth vs the warm-up sample.

Python-side allocations = tracemalloc total; native (pjsip/pjmedia pools, PortAudio, SQLite) = malloc in use
minus that. Usage::

    .venv/bin/python -m benchmarks.memory_growth --visits 400 --every 50 --trim
    .venv/bin/python -m benchmarks.memory_growth --visits 300 --tracemalloc --json out.json
    .venv/bin/python -m benchmarks.memory_growth --plot docs/img/memory_growth.png --from-json a.json b.json
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import dataclasses
import gc
import json
import logging
import os
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import anyio
from gpiozero.pins.mock import MockFactory

from daemon.config import Apartment, ButtonConfig, Config, PathsConfig, default_config_text, parse_config
from daemon.simulation.alsa import capture_alsa
from daemon.simulation.phone import Baresip, free_port

PAGE = os.sysconf("SC_PAGE_SIZE")
BUTTON = ButtonConfig("101", 17, min_press_ms=20.0, holdoff_ms=50.0)


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


_libc = ctypes.CDLL("libc.so.6")
_libc.mallinfo2.restype = MallInfo2
_libc.malloc_trim.argtypes = [ctypes.c_size_t]


def _sqlite_memory_used() -> Any:
    """SQLite's own allocation counter (page caches, schema, statements) of the library _sqlite3 links to."""
    try:
        import _sqlite3

        lib = ctypes.CDLL(_sqlite3.__file__)  # resolves sqlite3_memory_used through _sqlite3's own libsqlite3
        fn = lib.sqlite3_memory_used
        fn.restype = ctypes.c_int64
        return fn
    except (OSError, AttributeError, ImportError):
        return None


_sqlite_used = _sqlite_memory_used()


def rss_kb() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE // 1024


def rss_anon_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def malloc_kb() -> dict[str, int]:
    """glibc's view, summed over all arenas: bytes in use (incl. mmapped chunks) and free bytes it keeps."""
    m = _libc.mallinfo2()
    return {
        "malloc_used_kb": (m.uordblks + m.hblkhd) // 1024,
        "malloc_free_kb": m.fordblks // 1024,
        "malloc_arena_kb": m.arena // 1024,
    }


def object_counts() -> collections.Counter[str]:
    return collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())


def build_config(tmp: Path, resident_uri: str) -> Config:
    base = parse_config(default_config_text())
    apt = Apartment(name="ok", buttons=("101",), residents=(resident_uri,), codes=("1",))
    return dataclasses.replace(
        base,
        sip=dataclasses.replace(
            base.sip,
            bind_address="127.0.0.1",
            port=free_port(),
            rtp_port=22000 + (free_port() % 40) * 200,
            inbound_allow=(),
        ),
        apartments=(apt,),
        buttons=(BUTTON,),
        relay=dataclasses.replace(base.relay, pulse_seconds=0.1),
        timing=dataclasses.replace(
            base.timing, ring_timeout_seconds=5, hangup_after_open_seconds=0.05, wrong_code_limit=10_000
        ),
        paths=PathsConfig(state_dir=str(tmp / "state"), cache_dir=str(tmp / "cache"), runtime_dir=str(tmp / "run")),
    )


class Sampler:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows: list[dict[str, Any]] = []
        self.base_counts: collections.Counter[str] | None = None
        self.base_snapshot: tracemalloc.Snapshot | None = None
        self.last_counts: collections.Counter[str] = collections.Counter()
        self.last_snapshot: tracemalloc.Snapshot | None = None

    def sample(self, visits: int, app: Any, elapsed: float) -> dict[str, Any]:
        gc.collect()
        row: dict[str, Any] = {
            "visits": visits,
            "elapsed_s": round(elapsed, 1),
            "rss_kb": rss_kb(),
            "rss_anon_kb": rss_anon_kb(),
            **malloc_kb(),
        }
        if _sqlite_used is not None:
            row["sqlite_kb"] = _sqlite_used() // 1024
        if self.args.tracemalloc:
            row["traced_kb"] = tracemalloc.get_traced_memory()[0] // 1024
            row["tracemalloc_overhead_kb"] = tracemalloc.get_tracemalloc_memory() // 1024
        if self.args.trim:
            _libc.malloc_trim(0)
            row["rss_trimmed_kb"] = rss_kb()
            row["rss_anon_trimmed_kb"] = rss_anon_kb()
        counts = object_counts()
        row["objects"] = sum(counts.values())
        row["gc_counts"] = gc.get_count()
        row["app"] = app_figures(app)
        if visits == self.args.warmup or (self.base_counts is None and visits >= self.args.warmup):
            self.base_counts = counts
            if self.args.tracemalloc:
                self.base_snapshot = tracemalloc.take_snapshot()
        self.last_counts = counts
        if self.args.tracemalloc and visits > self.args.warmup:
            self.last_snapshot = tracemalloc.take_snapshot()
        self.rows.append(row)
        print(fmt_row(row), flush=True)
        return row

    def growth_report(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.base_counts is not None:
            diff = self.last_counts.copy()
            diff.subtract(self.base_counts)
            out["object_growth"] = [(k, v) for k, v in diff.most_common(15) if v > 0]
        if self.base_snapshot is not None and self.last_snapshot is not None:
            filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
            stats = self.last_snapshot.filter_traces(filters).compare_to(
                self.base_snapshot.filter_traces(filters), "lineno"
            )
            out["tracemalloc_growth"] = [
                {
                    "where": f"{s.traceback[0].filename}:{s.traceback[0].lineno}",
                    "size_diff_kb": round(s.size_diff / 1024, 1),
                    "count_diff": s.count_diff,
                }
                for s in stats[:20]
            ]
        return out


def app_figures(app: Any) -> dict[str, Any]:
    """Sizes of the app's own containers that could grow with visits (0 or flat expected)."""
    owner = getattr(app.sip, "_owner", None)
    holders = {
        "visits._lockouts": app.visits._lockouts,
        "history._pending": getattr(app.visit_history, "_pending", ()),
        "visit_log._started": getattr(app.visit_log, "_started", ()),
        "visit_log._subscribers": getattr(app.visit_log, "_subscribers", ()),
        "sip._records": getattr(owner, "_records", ()),
        "sip._pending_inbound": getattr(owner, "_pending_inbound", ()),
        "sip._ended_players": getattr(owner, "_ended_players", ()),
        "speaker.latencies": getattr(app.panel.speaker, "latencies", ()),
        "logging handlers": logging.getLogger().handlers,
        "threads": threading.enumerate(),
    }
    return {"completed": app.visits.completed, **{k: len(v) for k, v in holders.items()}}


def fmt_row(row: dict[str, Any]) -> str:
    parts = [
        f"visits {row['visits']:5d}",
        f"t {row['elapsed_s']:6.1f}s",
        f"RSS {row['rss_kb'] / 1024:7.2f} MB",
        f"anon {row['rss_anon_kb'] / 1024:6.2f}",
        f"malloc used {row['malloc_used_kb'] / 1024:6.2f}",
        f"free {row['malloc_free_kb'] / 1024:6.2f}",
    ]
    if "sqlite_kb" in row:
        parts.append(f"sqlite {row['sqlite_kb'] / 1024:5.2f}")
    if "traced_kb" in row:
        parts.append(f"traced {row['traced_kb'] / 1024:6.2f}")
    if "rss_trimmed_kb" in row:
        parts.append(f"RSS after trim {row['rss_trimmed_kb'] / 1024:7.2f}")
    parts.append(f"objects {row['objects']}")
    parts.append(" ".join(f"{k}={v}" for k, v in row["app"].items() if k != "completed"))
    return " | ".join(parts)


async def one_visit(factory: MockFactory, phone: Baresip, app: Any, n: int, talk: float) -> None:
    pin = factory.pin(BUTTON.pin)
    pin.drive_low()
    await anyio.sleep(0.04)
    pin.drive_high()
    await phone.wait_event("CALL_ESTABLISHED", 10)
    await anyio.sleep(talk)  # the waiting prompt is playing; RFC 2833 digits need the media up
    phone.command("sndcode", "1")
    with anyio.fail_after(20):
        await app.visits.wait_completed(n)
    relay = factory.pin(app.config.relay.pin)
    with anyio.fail_after(3):
        while relay.state:  # noqa: ASYNC110 - a MockPin has no event to await
            await anyio.sleep(0.01)
    # The harness's own growth, not the daemon's: baresip's event list and every MockPin's state history
    # (gpiozero's MockPin appends a PinState per change: the button, the relay and the blinking LEDs).
    phone.all_events.clear()
    for p in list(factory.pins.values()):
        if len(getattr(p, "states", ())) > 4:
            del p.states[:-2]
    await anyio.sleep(0.07)  # past the button's 50 ms hold-off


async def drive(args: argparse.Namespace, tmp: Path, phone: Baresip) -> dict[str, Any]:
    factory = MockFactory()
    config = build_config(tmp, phone.uri)
    from daemon.app import running

    sampler = Sampler(args)
    async with running(config, pin_factory=factory, settle_heap=True) as app:  # as intercomd run (daemon.heap)
        t0 = time.monotonic()
        sampler.sample(0, app, 0.0)
        for n in range(1, args.visits + 1):
            await one_visit(factory, phone, app, n, args.talk)
            if n % args.every == 0 or n == args.warmup:
                sampler.sample(n, app, time.monotonic() - t0)
        outcomes = [r.outcome for r in await app.visit_history.recent(args.visits + 5)]
    return {
        "rows": sampler.rows,
        **sampler.growth_report(),
        "door_opened": outcomes.count("door_opened"),
        "visits": args.visits,
    }


def plot(paths: list[Path], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for path in paths:
        data = json.loads(path.read_text())
        rows = data["rows"]
        x = [r["visits"] for r in rows]
        label = data.get("label", path.stem)
        ax.plot(x, [r["rss_kb"] / 1024 for r in rows], marker="o", label=f"RSS ({label})")
        if "rss_trimmed_kb" in rows[0]:
            ax.plot(
                x,
                [r["rss_trimmed_kb"] / 1024 for r in rows],
                marker=".",
                ls="--",
                label=f"RSS after malloc_trim ({label})",
            )
        ax.plot(x, [r["malloc_used_kb"] / 1024 for r in rows], marker="x", ls=":", label=f"malloc in use ({label})")
        if "traced_kb" in rows[0]:
            ax.plot(x, [r["traced_kb"] / 1024 for r in rows], marker="s", ls="-.", label=f"tracemalloc ({label})")
    ax.set_xlabel("visits (answer + code)")
    ax.set_ylabel("MB")
    ax.set_title("Memory over visits, whole app in-process")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--visits", type=int, default=300)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=50, help="the baseline sample for object/tracemalloc diffs")
    ap.add_argument("--talk", type=float, default=0.25, help="seconds between answer and the code")
    ap.add_argument("--trim", action="store_true", help="malloc_trim(0) at each sample (RSS shown before/after)")
    ap.add_argument("--tracemalloc", action="store_true")
    ap.add_argument("--frames", type=int, default=1, help="tracemalloc frames kept")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--label", default="")
    ap.add_argument("--plot", type=Path, help="write a PNG (from --from-json files, or this run)")
    ap.add_argument("--from-json", type=Path, nargs="*", default=[])
    args = ap.parse_args()
    if args.from_json:
        plot(args.from_json, args.plot or Path("docs/img/memory_growth.png"))
        return
    if args.tracemalloc:
        tracemalloc.start(args.frames)
    with tempfile.TemporaryDirectory(prefix="memory-growth-") as tmp_name:
        tmp = Path(tmp_name)
        with capture_alsa(tmp / "alsa"), Baresip(tmp, user="ok") as phone:
            result = anyio.run(drive, args, tmp, phone)
    result["label"] = args.label or ("tracemalloc" if args.tracemalloc else "plain") + (", trim" if args.trim else "")
    result["python"] = sys.version.split()[0]
    for key in ("object_growth", "tracemalloc_growth"):
        if key in result:
            print(f"\n{key}:")
            for item in result[key]:
                print("  ", item)
    rows = result["rows"]
    base = next((r for r in rows if r["visits"] >= args.warmup), rows[0])
    last = rows[-1]
    rss = (last["rss_kb"] - base["rss_kb"]) / 1024
    used = (last["malloc_used_kb"] - base["malloc_used_kb"]) / 1024
    print(
        f"\ndoor opened {result['door_opened']}/{args.visits}; RSS {base['visits']} -> {last['visits']} visits: "
        f"{rss:+.2f} MB; malloc in use {used:+.2f} MB"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.plot:
        plot([args.json] if args.json else [], args.plot)


if __name__ == "__main__":
    main()
