"""Where the press path's CPU goes, function by function: cProfile on the loop thread and on the SIP owner thread.

Runs :mod:`benchmarks.press_stages` (figure 1's harness, the whole app, its stages stamped from outside the product
code) with one :class:`cProfile.Profile` per thread, timed by that thread's own CPU clock
(``time.thread_time``), so a thread waiting in ``select``/``epoll`` costs nothing and what is left is work:

* the loop: from the bridge's call taking the press in the loop (``EventChannel._send_in_loop``) to the engine
  waking the owner for the dial (``SipEngine._wake``): the router, the visit's start, the runner, the dial command
  (the loop's own wake-up from ``epoll`` and asyncio's scheduling before that are not in it);
* the owner: from a no-op command run just before the press (the owner's thread enables its profiler there) to
  pjsua2's ``makeCall`` returning: the wake datagram read by ``libHandleEvents``, the owner's turn, ``makeCall``.

Profiling makes every Python call slower (several times for small functions): read the shares, not the sums.

    python -m benchmarks.press_profile [--presses 40] [--top 30] [app_bench's options, e.g. --logging none]
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time
from typing import Any

__all__ = ["main"]


def main() -> None:
    from benchmarks import app_bench, press_stages

    argv = sys.argv[1:]
    top = 30
    if "--top" in argv:
        i = argv.index("--top")
        top = int(argv[i + 1])
        del argv[i : i + 2]
    loop_prof = cProfile.Profile(time.thread_time)
    owner_prof = cProfile.Profile(time.thread_time)
    state = {"loop_on": False, "loop_done": False, "owner_on": False, "presses": 0}
    engines: list[Any] = []
    real_stamp = press_stages._stamp

    def stamp(key: str) -> None:
        real_stamp(key)
        if not press_stages.armed[0]:
            return
        if key == "in_loop" and not state["loop_on"] and not state["loop_done"]:  # the loop takes the press
            loop_prof.enable()
            state["loop_on"] = True
        elif key == "wake" and state["loop_on"]:  # on the loop thread: the owner is being woken for the dial
            loop_prof.disable()
            state["loop_on"], state["loop_done"] = False, True
        elif key == press_stages.SENT[0] and state["owner_on"]:  # on the owner thread: makeCall returned
            owner_prof.disable()
            state["owner_on"] = False

    press_stages._stamp = stamp  # the stage wrappers look the name up at each call

    from daemon.sip.engine import SipEngine

    real_enter = SipEngine.__aenter__

    async def enter(self: SipEngine) -> SipEngine:
        engine = await real_enter(self)
        engines.append(engine)
        return engine

    SipEngine.__aenter__ = enter  # type: ignore[method-assign, assignment]

    real_press = app_bench.press

    async def press(*args: Any, **kwargs: Any) -> dict[str, Any]:
        engine = engines[-1]

        def owner_on(_owner: Any) -> None:
            owner_prof.enable()  # on the owner thread: its turns until makeCall returns are profiled
            state["owner_on"] = True

        armed, press_stages.armed[0] = press_stages.armed[0], False  # this command is not a stage of the press
        await engine._run("profile", owner_on)
        press_stages.armed[0] = armed
        state["loop_done"] = False
        try:
            return await real_press(*args, **kwargs)
        finally:
            if state["loop_on"]:
                loop_prof.disable()
                state["loop_on"] = False
            state["presses"] += 1

    app_bench.press = press  # press_stages wraps this one in turn
    sys.argv = [sys.argv[0], *argv]
    press_stages.main()
    n = max(1, state["presses"])
    profiles = (("loop thread (the press in the loop -> waking the owner)", loop_prof), ("SIP owner", owner_prof))
    for name, prof in profiles:
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        total = stats.total_tt  # type: ignore[attr-defined]
        print(f"\n=== {name}: {1000 * total / n:.3f} ms of thread CPU per press (profiled), {n} presses ===")
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
        print(out.getvalue())


if __name__ == "__main__":
    main()
