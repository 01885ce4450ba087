"""The directory file at size: start-up (reading, validating and merging N apartments, as ``load_config`` does at
start and on SIGHUP) and a keypad number's lookup, for 5,000 apartments by default.

    python -m benchmarks.directory_bench [--apartments 5000] [--repeats 5] [--json]

Load time is the median of ``--repeats`` fresh loads (the first, which also warms the URI parser's and the schema's
caches, is reported apart: it is what a cold start pays); lookup is the mean over a million lookups of numbers that
exist, and of numbers that do not.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from daemon.config import Config, default_config_text, load_config

__all__ = ["directory_text", "measure", "write_panel"]

FIRST_NUMBER = 1000


def directory_text(apartments: int, *, resident: dict[str, str] | None = None) -> str:
    """A directory file of ``apartments`` numbered from 1000, two residents each (one of them a fallback for
    every tenth), a distinct 6-digit code each; ``resident`` puts given URIs on given numbers."""
    lines = ["number,name,residents,codes,strategy,fallback"]
    for i in range(apartments):
        number = str(FIRST_NUMBER + i)
        residents = (resident or {}).get(number) or f"sip:{number}a@127.0.0.1:5080 sip:{number}b@127.0.0.1:5080"
        strategy = "sequential" if i % 10 == 0 else "parallel"
        fallback = "sip:portaria@127.0.0.1:5080" if i % 10 == 0 else ""
        # Codes differ in their first digit from every other's prefix: 6 digits, no runs.
        code = f"{(i * 7919) % 900_000 + 100_000}"
        lines.append(f'{number},"Apto {number}",{residents},{code},{strategy},{fallback}')
    return "\n".join(lines) + "\n"


def write_panel(directory: Path, apartments: int, *, resident: dict[str, str] | None = None) -> Path:
    """The default configuration with a keypad and a directory file beside it; returns the TOML's path."""
    (directory / "directory.csv").write_text(directory_text(apartments, resident=resident), encoding="utf-8")
    text = 'directory = "directory.csv"\n' + default_config_text().replace('"/var/lib/intercom"', f'"{directory}"')
    text += "\n[keypad]\nrows = [12, 16, 20, 21]\ncolumns = [13, 19, 26]\n"
    path = directory / "intercom.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _load(path: Path) -> tuple[Config, float]:
    started = time.perf_counter()
    config, _ = load_config(path)
    return config, time.perf_counter() - started


def measure(apartments: int, repeats: int, lookups: int = 1_000_000) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-directory-") as tmp:
        path = write_panel(Path(tmp), apartments)
        config, first = _load(path)
        loads = [_load(path)[1] for _ in range(repeats)]
    numbers = [str(FIRST_NUMBER + random.randrange(apartments)) for _ in range(1000)]
    missing = [str(FIRST_NUMBER + apartments + i) for i in range(1000)]
    assert all(config.apartment_for_number(n) is not None for n in numbers)
    out: dict[str, float] = {
        "apartments": float(len(config.apartments)),
        "first_load_s": first,
        "load_median_s": statistics.median(loads),
        "load_max_s": max(loads),
    }
    for name, sample in (("lookup_found_ns", numbers), ("lookup_missing_ns", missing)):
        rounds = max(1, lookups // len(sample))
        started = time.perf_counter()
        for _ in range(rounds):
            for number in sample:
                config.apartment_for_number(number)
        out[name] = (time.perf_counter() - started) / (rounds * len(sample)) * 1e9
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--apartments", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    figures = measure(args.apartments, args.repeats)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"directory of {figures['apartments']:.0f} apartments (with the default config's own)")
    print(f"  first load (cold caches)   {figures['first_load_s'] * 1000:8.1f} ms")
    print(f"  load, median of {args.repeats:<2}        {figures['load_median_s'] * 1000:8.1f} ms")
    print(f"  lookup, number found        {figures['lookup_found_ns']:8.0f} ns")
    print(f"  lookup, number not found    {figures['lookup_missing_ns']:8.0f} ns")


if __name__ == "__main__":
    main()
