"""``python -m benchmarks [--quick | --full] [--idle-seconds S] [--out docs/benchmarks.md]``.

Runs every figure (each side of a comparison in its own subprocess), prints a summary and writes the
report with its plots. Exit status is 0 whatever the numbers are; it is 1 only if the harness itself broke
(a figure's subprocess crashed), and such errors are also listed at the end of the report.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from benchmarks import app_figures
from benchmarks._proc import ROOT, machine
from benchmarks.cpu_quota import quota_figure
from benchmarks.figures import PROFILES, bridge_figure, prompt_figure, sip_figures
from benchmarks.idle_wakeups import idle_figure
from benchmarks.memory_breakdown import memory_figure
from benchmarks.report import Figure, console, write_report
from benchmarks.talk_call import talk_figure

# Length of figure 10's talk call per profile (minutes); docs/audio.md's run is 10 minutes.
TALK_MINUTES = {"quick": 0.25, "default": 1.0, "full": 10.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tiny counts, a few seconds (the smoke test)")
    size.add_argument("--full", action="store_true", help="the complete counts (1,000 visits, 60 s idle)")
    ap.add_argument("--idle-seconds", type=float, help="idle CPU window of figure 6 (profile default)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="run only these groups: bridge prompts sip app idle memory quota talk (default: all; --quick leaves "
        "out memory, quota and talk, which tests/benchmarks/test_budget_benchmarks.py and test_talk_call.py run "
        "small)",
    )
    ap.add_argument(
        "--ring-group",
        type=int,
        default=None,
        help="legs of figure 7's parallel ring group (default: 8 on a pjsua2 that places 8 calls at once, the "
        "source build; 4 on a pjsua2 limited to 4 calls)",
    )
    args = ap.parse_args(argv)
    profile = PROFILES["quick" if args.quick else "full" if args.full else "default"]
    if args.idle_seconds is not None:
        profile = replace(profile, idle_seconds=args.idle_seconds)
    default_groups = ["bridge", "prompts", "sip", "app", "idle"] + ([] if args.quick else ["memory", "quota", "talk"])
    groups = set(args.only or default_groups)
    started = time.monotonic()
    errors: list[str] = []
    figures: list[Figure] = []
    steps: list[tuple[str, Callable[[], list[Figure]]]] = [
        ("app", lambda: app_figures.app_figures(profile, errors, args.ring_group)),
        ("bridge", lambda: [bridge_figure(profile, errors)]),
        ("sip", lambda: sip_figures(profile, errors)),
        ("prompts", lambda: [prompt_figure(profile, errors)]),
        ("idle", lambda: [idle_figure(profile.idle_seconds, errors)]),
        ("memory", lambda: [memory_figure(errors)]),
        ("quota", lambda: [quota_figure(errors)]),
        ("talk", lambda: [talk_figure(TALK_MINUTES[profile.name], errors)]),
    ]
    for name, step in steps:
        if name in groups:
            t = time.monotonic()
            print(f"benchmarks: {name} ...", file=sys.stderr, flush=True)
            figures += step()
            print(f"benchmarks: {name} done in {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)
    figures.sort(key=lambda f: f.title)
    meta = {
        "machine": machine(),
        "argv": " ".join(argv if argv is not None else sys.argv[1:]),
        "profile": profile.name,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": time.monotonic() - started,
        "errors": errors,
    }
    print(console(figures))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_report(args.out, args.out.parent / "img", figures, meta)
    print(f"\nwrote {args.out} and {args.out.parent / 'img'}/ in {meta['seconds']:.0f} s")
    for e in errors:
        print(f"ERROR: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
