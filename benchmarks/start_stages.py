"""What start -> READY is made of (issue 18, figure 9b): the daemon's start-up, stage by stage, in one process.

Runs ``daemon.app.running`` on a configuration file as ``intercomd run`` does, with the start-up's stages stamped
from outside the product code (each wrapped method's entry and exit, ``time.monotonic()``, one clock for every
process): importing the daemon, loading the configuration, the panel (GPIO, relay released), the history database,
the prompt cache (a cold cache synthesizes every prompt with espeak-ng), the SIP engine (pjsua2's libCreate, libInit,
transport, account), the wiring and the long-lived tasks (control socket), then READY. The parent
(:mod:`benchmarks.cpu_quota`) stamps the spawn, so the interpreter's own start is the first stage.

    python -m benchmarks.start_stages CONFIG   (one JSON line)
"""

from __future__ import annotations

import time

T_PROCESS = time.monotonic()  # before the heavy imports

import functools  # noqa: E402
import importlib  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

__all__ = ["STAGES", "stage_seconds"]

# (key, what it is, the class or module path and the attribute wrapped), in start-up order.
STAGES: tuple[tuple[str, str, str, str], ...] = (
    ("panel", "panel: GPIO devices, relay released, speaker object", "hw.panel.Panel", "__init__"),
    ("history", "history database opened (writer thread)", "daemon.history.History", "open"),
    ("prompts", "prompt cache prepared (synthesis when cold)", "daemon.prompts.PromptCache", "prepare"),
    ("sip", "SIP engine started (pjsua2 init, transport, account)", "daemon.sip.engine.SipEngine", "__aenter__"),
    ("wire", "visit router and ports wired", "daemon.app.IntercomApp", "_wire_visits"),
    ("serve", "long-lived tasks and the control socket", "daemon.app.IntercomApp", "_serve"),
)

spans: dict[str, list[float]] = {}


def _wrap(key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if fn.__code__.co_flags & 0x80:  # a coroutine function

        @functools.wraps(fn)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                return await fn(*args, **kwargs)
            finally:
                spans.setdefault(key, [start, time.monotonic()])

        return timed_async

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            spans.setdefault(key, [start, time.monotonic()])

    return timed


def stage_seconds(r: dict[str, Any], spawned: float) -> dict[str, float]:
    """Seconds per stage of one start (the parent's spawn time ``spawned``), in order; gaps between stamped stages
    are named for what runs there."""
    out = {"interpreter start (before the first import)": r["t_process"] - spawned}
    out["import daemon.app"] = r["t_imported"] - r["t_process"]
    out["configuration loaded and checked"] = r["t_config"] - r["t_imported"]
    previous = r["t_config"]
    for key, what, *_rest in STAGES:
        if key in r["spans"]:
            start, end = r["spans"][key]
            if start - previous > 0.005:
                out[f"between: before {key}"] = start - previous
            out[what] = end - start
            previous = end
    out["READY after the last stage"] = r["t_ready"] - previous
    return out


def main() -> None:
    import anyio

    from daemon.app import running

    t_imported = time.monotonic()
    from daemon.config import load_config

    config, _warnings = load_config(Path(sys.argv[1]))
    t_config = time.monotonic()
    for key, _what, path, attr in STAGES:
        module_name, cls_name = path.rsplit(".", 1)
        cls = getattr(importlib.import_module(module_name), cls_name)
        setattr(cls, attr, _wrap(key, getattr(cls, attr)))

    async def start() -> float:
        async with running(config):
            return time.monotonic()

    t_ready = anyio.run(start)
    from benchmarks._proc import emit

    emit({"t_process": T_PROCESS, "t_imported": t_imported, "t_config": t_config, "t_ready": t_ready, "spans": spans})


if __name__ == "__main__":
    main()
