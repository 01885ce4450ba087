"""Whole visits over a lossy link: success rate and code-to-open time at 0, 5 and 20 % loss, with jitter and
reordering, through the netlab's impairment bridge (seeded).

The panel is the whole daemon (benchmarks/net_visit_panel.py) in the netlab's panel namespace; the resident is
the SIP engine (tests/support/sip_harness.py) in the PBX's namespace, called direct-IP, answering at once. One
visit: the doorbell is pressed, the panel says its prompt and calls, the resident answers and, 0.8 s later,
types the code, a key every 0.3 s; the figure is the time from the first key to the door relay energizing. A
resident whose door has not opened ``--retype-after`` seconds after typing types ``*`` (clears a partial entry)
and the code again, once; a visit whose door never opens is hung up by the resident and counted as failed.

Each loss level runs twice in the same run: the resident sending the code as RFC 2833 events (pjsua's default:
pjmedia repeats each event's packets while the key is held and sends the end-of-event packet three times) and as
SIP INFO (each digit a SIP transaction, retransmitted until answered). The panel receives both with pjsua's own
settings (nothing of ours changes DTMF reception), so the INFO column is the other behaviour a resident's phone
may have, not a setting of ours.

Needs root (network namespaces), espeak-ng. Run from the repository root:
``.venv/bin/python -m benchmarks.net_visits [--visits 10] [--seed 1] [--level NAME]``. Prints a Markdown table
(for docs/reliability.md); asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._stats import percentile
from tests.support.netlab import PANEL_IP, PBX_IP, NetLab, netlab, netlab_available
from tests.support.netpeers import EngineProcess

CODE = "2580"
KEY_GAP = 0.3  # seconds between two keys (pjsua queues RFC 2833 digits closer than ~250 ms)
RESIDENT_PORT = 5070
Method = Literal["rfc2833", "info"]
METHODS: tuple[Method, ...] = ("rfc2833", "info")
# opened at the first typing, after one retype, never; the call never answered; the call ended under the resident
Outcome = Literal["first", "retyped", "not_opened", "no_call", "call_lost"]
# name -> the impair bridge's settings (each way)
LEVELS: dict[str, dict[str, float]] = {
    "0 %": {"loss": 0.0},
    "5 %, 20 ms jitter": {"loss": 0.05, "jitter_ms": 20},
    "20 %, 20 ms jitter": {"loss": 0.20, "jitter_ms": 20},
    "5 %, 100 ms jitter, 10 % reordered": {"loss": 0.05, "jitter_ms": 100, "reorder": 0.10},
}


@dataclass
class Tally:
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)  # code typed -> relay, visits that opened

    def cell(self) -> str:
        n = sum(self.outcomes.values())
        opened = self.outcomes["first"] + self.outcomes["retyped"]
        text = f"{opened}/{n} opened ({self.outcomes['retyped']} retyped)"
        if self.outcomes["no_call"]:
            text += f", {self.outcomes['no_call']} never answered"
        if self.outcomes["call_lost"]:
            text += f", {self.outcomes['call_lost']} call ended while typing"
        if self.seconds:
            med, p90 = statistics.median(self.seconds), percentile(self.seconds, 90)
            text += f"; code-to-open median {med:.2f} s, p90 {p90:.2f} s"
        return text


def _next(proc: EngineProcess, mark: int, match: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
    """The first message from ``proc.seen[mark:]`` on (seen already, or to come) that ``match`` accepts."""
    for message in proc.seen[mark:]:
        if match(message):
            return message
    return proc.wait_for(match, timeout)


def _event(kind: str, generation: int | None = None) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("event") == kind and (generation is None or m["handle"]["generation"] == generation)


def _type(resident: EngineProcess, generation: int, digits: str, method: Method) -> float | None:
    """Type ``digits`` as a person does, a key every 0.3 s (paced by the resident's process); returns when the
    first was sent (monotonic), or None when the call is gone (the panel ended it: nothing can be typed)."""
    command = {"cmd": "dtmf", "generation": generation, "digits": digits, "method": method, "gap": KEY_GAP}
    answer = resident.send(timeout=len(digits) * KEY_GAP + 10, **command)
    return None if "error" in answer else float(answer["at"])


def one_visit(
    panel: EngineProcess, resident: EngineProcess, method: Method, retype_after: float
) -> tuple[Outcome, float]:
    panel_mark, resident_mark = len(panel.seen), len(resident.seen)
    visits_before = sum(1 for m in panel.seen if m.get("event") == "visit")
    panel.send(cmd="press")
    outcome: Outcome = "no_call"
    seconds = 0.0
    try:
        incoming = _next(resident, resident_mark, _event("IncomingCall"), 30)
        generation = int(incoming["handle"]["generation"])
        _next(resident, resident_mark, _event("CallAnswered", generation), 30)
    except TimeoutError:
        generation = None
    if generation is not None:
        time.sleep(0.8)  # the resident's pace: the phone to the ear, then the keypad
        outcome = "call_lost"
        typed = _type(resident, generation, CODE, method)
        for attempt, digits in (("first", CODE), ("retyped", "*" + CODE)):
            if typed is None:
                break
            if attempt == "retyped" and _type(resident, generation, digits, method) is None:
                break
            outcome = "not_opened"
            try:
                relay = _next(panel, panel_mark, lambda m: m.get("event") == "relay" and m["at"] > typed, retype_after)
            except TimeoutError:
                continue
            outcome, seconds = attempt, float(relay["at"]) - typed  # type: ignore[assignment]
            break
        if outcome == "not_opened":
            resident.send(cmd="hangup", generation=generation)
    # The visit ends (the panel hangs up 0.5 s after the door opened, or the resident hung up) before the next.
    _next(panel, panel_mark, lambda m: m.get("event") == "visit" and m["count"] > visits_before, 60)
    if outcome in ("first", "retyped"):  # the pulse is over: an open during a pulse would extend it, no new edge
        _next(panel, panel_mark, lambda m: m.get("event") == "relay_off", 10)
    time.sleep(1.2)  # the doorbell's hold-off
    return outcome, seconds


def run(
    tmp: Path, visits: int, levels: list[str], methods: tuple[Method, ...], seed: int, retype_after: float
) -> dict[tuple[str, Method], Tally]:
    tallies: dict[tuple[str, Method], Tally] = {}
    with netlab(seed=seed) as lab, ExitStack() as stack:
        resident = _resident(tmp, lab)
        stack.callback(resident.stop)
        panel = EngineProcess(
            tmp / "panel",
            lab,
            {"state": str(tmp / "state"), "cache": str(tmp / "cache"), "resident": _resident_uri(), "code": CODE},
            module="benchmarks.net_visit_panel",
        )
        panel.ready_timeout = 120.0  # the prompts are synthesized once, at the first start
        panel.start()
        stack.callback(panel.stop)
        for i, level in enumerate(levels):
            lab.impair(**LEVELS[level], seed=seed * 100 + i)
            for method in methods:
                tally = tallies[(level, method)] = Tally()
                for _ in range(visits):
                    outcome, seconds = one_visit(panel, resident, method, retype_after)
                    print(f"net_visits: {level} {method}: {outcome} {seconds:.2f} s", file=sys.stderr, flush=True)
                    tally.outcomes[outcome] += 1
                    if outcome in ("first", "retyped"):
                        tally.seconds.append(seconds)
                print(f"net_visits: {level} {method}: {tally.cell()}", file=sys.stderr, flush=True)
    return tallies


def _resident_uri() -> str:
    return f"sip:resident@{PBX_IP}:{RESIDENT_PORT}"


def _resident(tmp: Path, lab: NetLab) -> EngineProcess:
    config = {
        "bind_address": "0.0.0.0",
        "port": RESIDENT_PORT,
        "rtp_port": 21000,
        "inbound_allow": [f"sip:portao@{PANEL_IP}"],
        "media_timeout_seconds": 0,
        "account": {"uri": f"sip:resident@{PBX_IP}"},
    }
    resident = EngineProcess(tmp / "resident", lab, config, ns=lab.pbx)
    resident.ready_timeout = 60.0  # a loaded machine
    return resident.start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--visits", type=int, default=10, help="visits per loss level and DTMF method")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--retype-after", type=float, default=5.0, help="seconds before the resident retypes")
    parser.add_argument("--level", choices=tuple(LEVELS), action="append", help="run just these levels")
    parser.add_argument("--method", choices=METHODS, action="append", help="run just these DTMF methods")
    parser.add_argument("--keep", type=Path, help="keep the logs in this directory (default: a temporary one)")
    args = parser.parse_args()
    why = netlab_available()
    if why is not None:
        sys.exit(f"net_visits: {why}")
    levels = args.level or list(LEVELS)
    started = time.monotonic()
    methods = tuple(args.method or METHODS)
    with ExitStack() as stack:
        tmp = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        tallies = run(tmp, args.visits, levels, methods, args.seed, args.retype_after)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"{args.visits} visits per cell, seed {args.seed}, {time.monotonic() - started:.0f} s; load at the end {load}\n"
    )
    titles = {"rfc2833": "RFC 2833 (pjsua's default)", "info": "SIP INFO"}
    print("| loss each way | " + " | ".join(titles[m] for m in methods) + " |")
    print("|---|" + "---|" * len(methods))
    for level in levels:
        print(f"| {level} | " + " | ".join(tallies[(level, m)].cell() for m in methods) + " |")


if __name__ == "__main__":
    main()
