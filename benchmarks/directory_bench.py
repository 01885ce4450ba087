"""The directory file at size: start-up (reading, validating and merging N apartments, as ``load_config`` does at
start and on SIGHUP) and a keypad number's lookup, for 5,000 apartments by default.

    python -m benchmarks.directory_bench [--apartments 5000] [--repeats 5] [--app] [--json]

Load time is the median of ``--repeats`` fresh loads (the first, which also warms the URI parser's and the schema's
caches, is reported apart: it is what a cold start pays); lookup is the mean over a million lookups of numbers that
exist, and of numbers that do not. ``--app`` also starts the whole daemon (mock pins, a silent ALSA device, pjsua2 on
127.0.0.1) on the loaded configuration and on one without the directory, and reports the time to READY of each
(prompts already cached; the median of 3 runs each, alternated): what the directory adds to a start is its load.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import socket
import statistics
import tempfile
import time
from pathlib import Path

import anyio

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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _ready_seconds(config: Config) -> float:
    from gpiozero.pins.mock import MockFactory

    from daemon.app import running

    started = time.perf_counter()
    async with running(config, pin_factory=MockFactory()):
        return time.perf_counter() - started


def measure_app(apartments: int) -> dict[str, float]:
    """Seconds from the app's start to READY, with and without the directory (a warm-up run caches prompts)."""
    from benchmarks.app_bench import null_alsa

    with tempfile.TemporaryDirectory(prefix="bench-directory-app-") as tmp:
        null_alsa(Path(tmp))
        loaded, _ = load_config(write_panel(Path(tmp), apartments))
        paths = dataclasses.replace(loaded.paths, state_dir=tmp, cache_dir=f"{tmp}/cache", runtime_dir=f"{tmp}/run")
        sip = dataclasses.replace(loaded.sip, bind_address="127.0.0.1", port=_free_port(), rtp_port=27000)
        full = dataclasses.replace(loaded, paths=paths, sip=sip)
        small = dataclasses.replace(full, apartments=full.apartments[:2], directory="")
        anyio.run(_ready_seconds, small)  # synthesizes the prompts into the cache
        runs: dict[str, list[float]] = {"app_ready_without_s": [], "app_ready_with_s": []}
        for _ in range(3):  # alternated, so neither pays the process's own warm-up alone
            runs["app_ready_without_s"].append(anyio.run(_ready_seconds, small))
            runs["app_ready_with_s"].append(anyio.run(_ready_seconds, full))
        return {name: statistics.median(values) for name, values in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--apartments", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--app", action="store_true", help="also time the whole daemon's start to READY")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    figures = measure(args.apartments, args.repeats)
    if args.app:
        figures |= measure_app(args.apartments)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"directory of {figures['apartments']:.0f} apartments (with the default config's own)")
    print(f"  first load (cold caches)   {figures['first_load_s'] * 1000:8.1f} ms")
    print(f"  load, median of {args.repeats:<2}        {figures['load_median_s'] * 1000:8.1f} ms")
    print(f"  lookup, number found        {figures['lookup_found_ns']:8.0f} ns")
    print(f"  lookup, number not found    {figures['lookup_missing_ns']:8.0f} ns")
    if args.app:
        print(f"  daemon start to READY, with the directory     {figures['app_ready_with_s'] * 1000:8.1f} ms")
        print(f"  daemon start to READY, 2 apartments (no file) {figures['app_ready_without_s'] * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
