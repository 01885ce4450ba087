"""Figures 1, 2, 4, 5 (app level), 6 and 7 through the whole app: ``daemon.app.running(config, pin_factory=...)``.

One process runs the app on gpiozero MockFactory pins with its real SIP engine, speaker (PortAudio into an
ALSA ``null`` PCM) and prompt cache; the far end (:mod:`benchmarks.far_end`) answers as the resident and
types the door code. A press is the button's mock pin driven low for longer than ``min_press_ms``.

The app logs as in production (``--logging journal``, the default): INFO, each record sent in journald's native
protocol to a reader process (:mod:`benchmarks._journal_sink`), as ``intercomd run`` does under systemd.
``--logging none`` is the harness as it was before: no handler, so nothing at INFO is formatted or written.

Where each timestamp comes from (all ``time.monotonic``, CLOCK_MONOTONIC, shared by every process):

* button edge: just before ``drive_low()`` here;
* INVITE: :class:`benchmarks._wire.InviteStamperProcess`, a UDP relay in a process of its own between the panel
  and the far end (the resident's URI points at it), stamps each INVITE as it arrives;
* first prompt sample handed to ALSA: the speaker's ``on_first_buffer`` hook (called in its worker thread
  right after the first ``stream.write``);
* relay energized: a MockPin subclass stamps every state change of the relay's pin;
* DTMF sent: the far end stamps each ``dialDtmf``.
"""

from __future__ import annotations

import time

T_PROCESS = time.monotonic()  # before the heavy imports: start -> READY includes them

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import AsyncIterator, Callable  # noqa: E402
from contextlib import asynccontextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import anyio  # noqa: E402
from gpiozero.pins.mock import MockFactory, MockPin  # noqa: E402

from benchmarks._gc_pauses import GcPauses  # noqa: E402
from benchmarks._journal_sink import LOGGING_MODES, JournalSink  # noqa: E402
from benchmarks._pj import FarEnd, loaded_max_calls  # noqa: E402
from benchmarks._proc import emit, footprint, smaps_rollup  # noqa: E402
from benchmarks._wire import InviteStamperProcess as InviteStamper  # noqa: E402
from daemon.config import Apartment, ButtonConfig, Config, default_config_text, parse_config  # noqa: E402
from tests.support.peers import Kamailio  # noqa: E402

# INTERCOM_BENCH_PORT_OFFSET moves every port of a run, so an exploratory run can go beside another one.
_OFFSET = int(os.environ.get("INTERCOM_BENCH_PORT_OFFSET", "0"))
APP_SIP, APP_RTP, RELAY_PORT, FAR_PORT, FAR_RTP = (p + _OFFSET for p in (15100, 25000, 15110, 15120, 26000))
# sipp calling the panel; sipp ringing as the other legs of the ring groups
LOAD_PORT, LEGS_PORT = 15130 + _OFFSET, 15140 + _OFFSET
BUTTON_PIN = 17
GROUP_PIN = 18  # the "concierge" button: during the load phase it rings a parallel group of --ring-group legs
BASELINE_PIN = 16  # a third button: the baseline group of 4, pressed in turn with the group under test
# A default pjsua2 (e.g. the PyPI wheel, no longer supported) places at most 4 calls at once (PJSUA_MAX_CALLS);
# our source build (packaging/pjsua2) allows 32.
BASELINE_GROUP = 4
MIN_PRESS_MS = 50.0
PANEL_PASSWORD = "bench-s3cret"
IDLE_LAG_SECONDS = 10.0  # the idle lag baseline of figure 7, taken after the idle CPU window


class StampedPin(MockPin):  # type: ignore[misc]  # untyped library
    """A MockPin that remembers the monotonic time of every change (MockPin.states keeps deltas only)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.stamps: list[tuple[float, bool]] = []
        super().__init__(*args, **kwargs)

    def _change_state(self, value: bool) -> bool:
        changed: bool = super()._change_state(value)
        if changed:
            self.stamps.append((time.monotonic(), bool(value)))
        return changed


def default_ring_group() -> int:
    """8 (the issue's parallel group) when the loaded pjsua2 can place 8 calls at once (the source build), else
    the baseline's 4 (a default pjsua2 build)."""
    return 8 if loaded_max_calls() >= 8 else BASELINE_GROUP


def ring_group(name: str, button: str, size: int, leg_user: str) -> Apartment:
    """A parallel group: the far end (through the stamping relay) answers; the other legs ring at sipp until
    cancelled."""
    return Apartment(
        name=name,
        buttons=(button,),
        residents=(
            f"sip:101@127.0.0.1:{RELAY_PORT}",
            *(f"sip:{leg_user}{i}@127.0.0.1:{LEGS_PORT}" for i in range(2, size + 1)),
        ),
        codes=("1",),
        strategy="parallel",
    )


def bench_config(tmp: Path, registrar: Kamailio, group_size: int) -> Config:
    base = parse_config(default_config_text(), "<default>")
    # Registered at a real registrar, as a panel behind a PBX is: figure 6 asks for a registration up.
    account = dataclasses.replace(
        base.sip.account,
        uri=registrar.uri("panel"),
        registrar=registrar.registrar,
        username="panel",
        password=PANEL_PASSWORD,
    )
    buttons = tuple(dataclasses.replace(b, min_press_ms=MIN_PRESS_MS, holdoff_ms=0.0) for b in base.buttons)
    apartment = dataclasses.replace(
        base.apartments[0],
        residents=(f"sip:101@127.0.0.1:{RELAY_PORT}",),
        codes=("1",),
        fallback="",
        strategy="parallel",
    )
    group = ring_group(base.apartments[1].name, base.apartments[1].buttons[0], group_size, "leg")
    groups: tuple[Apartment, ...] = (group,)
    if group_size != BASELINE_GROUP:
        buttons += (ButtonConfig("baseline", BASELINE_PIN, min_press_ms=MIN_PRESS_MS, holdoff_ms=0.0),)
        groups += (ring_group("baseline", "baseline", BASELINE_GROUP, "base"),)
    return dataclasses.replace(
        base,
        buttons=buttons,
        relay=dataclasses.replace(base.relay, pulse_seconds=0.2),
        sip=dataclasses.replace(
            base.sip,
            bind_address="127.0.0.1",
            port=APP_SIP,
            rtp_port=APP_RTP,
            inbound_allow=(),
            inbound_sources=(),
            account=account,
            max_calls=max(base.sip.max_calls, group_size),
        ),
        timing=dataclasses.replace(base.timing, hangup_after_open_seconds=0.0, ring_timeout_seconds=10.0),
        apartments=(apartment, *groups, *base.apartments[2:]),
        paths=dataclasses.replace(
            base.paths, state_dir=str(tmp / "state"), cache_dir=str(tmp / "cache"), runtime_dir=str(tmp / "run")
        ),
    )


def null_alsa(tmp: Path) -> None:
    """ALSA's default PCM plays nowhere; must be set before PortAudio initializes (the speaker's start)."""
    conf = tmp / "asound.conf"
    conf.write_text("pcm.!default { type null }\nctl.!default { type hw card 0 }\n", encoding="utf-8")
    os.environ["ALSA_CONFIG_PATH"] = str(conf)


class LagProbe:
    """The loop's scheduling lag: how late a 10 ms sleep wakes up, sampled while the probe runs."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.active = False

    async def run(self) -> None:
        while True:
            t = time.monotonic()
            await anyio.sleep(0.01)
            if self.active:
                self.samples.append(max(0.0, (time.monotonic() - t - 0.01) * 1000))


async def press(
    factory: MockFactory, relay: StampedPin, first_buffers: list[float], within: float = 10.0, button: int = BUTTON_PIN
) -> dict[str, Any]:
    """One visit: press, wait for the door to open and the visit to end. Returns its timestamps."""
    pin = factory.pin(button)
    relay_before = len([s for s in relay.stamps if s[1]])
    edge = time.monotonic()
    pin.drive_low()
    await anyio.sleep(MIN_PRESS_MS / 1000 + 0.03)
    pin.drive_high()
    opened = None
    with anyio.move_on_after(within):
        while opened is None:  # the pin changes on gpiozero's thread; 5 ms polling is plenty
            highs = [t for t, v in relay.stamps if v]
            opened = highs[relay_before] if len(highs) > relay_before else None
            await anyio.sleep(0.005)
    return {"edge": edge, "opened": opened}


async def _until(condition: Callable[[], bool], within: float, period: float) -> bool:
    """Poll ``condition`` (the app exposes statuses, not events, for these) until true or ``within`` s."""
    with anyio.move_on_after(within):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(period)
        return True
    return False


# After a visit ends, what it left to do a moment later: events.jsonl's write 0.1 s behind, the history row's 0.2 s
# behind, the log lines' 0.05 s behind, the relay pulse's end. A visitor does not press again within that; pressed
# 0.05 s after the end (as before), the next press's 50 ms hold ended just as those writes ran, and each press's path
# to its INVITE shared the CPU with the previous visit's bookkeeping: a harness artifact, not a panel's day.
SETTLE_S = 0.3


async def wait_idle(app: Any, within: float = 10.0, settle: float = SETTLE_S) -> bool:
    if not await _until(lambda: _idle(app), within, 0.01):
        return False
    await anyio.sleep(settle)  # let the call's end and its write-behinds settle
    return True


async def wait_registered(app: Any, within: float = 10.0) -> bool:
    return await _until(lambda: bool(getattr(app, "registered", False)), within, 0.05)


def _idle(app: Any) -> bool:
    if hasattr(app, "visits"):
        status = app.visits.status()
        return status["active"] is None and not status["queued"]
    return bool(app.idle())


def _completed(app: Any) -> int:
    return int(app.visits.status()["completed"]) if hasattr(app, "visits") else int(app.completed)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@asynccontextmanager
async def start_app(
    config: Config, factory: MockFactory, out: dict[str, Any], *, settle_heap: bool = True
) -> AsyncIterator[Any]:
    """The whole app if it starts; otherwise the parts wiring, with the app's error recorded. ``settle_heap``: as
    ``intercomd run`` does (daemon.heap), unless a run compares against the heap left as it was."""
    try:
        from daemon.app import running

        async with running(config, pin_factory=factory, settle_heap=settle_heap) as app:
            out["path"] = "app"
            yield app
            return
    except Exception as exc:
        if "path" in out:
            raise
        out["app_error"] = f"{type(exc).__name__}: {_leaf(exc)}"
    from benchmarks.parts_app import running_parts

    async with running_parts(config, pin_factory=factory) as app:
        out["path"] = "parts"
        yield app


def _leaf(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return str(exc)


async def drive(args: argparse.Namespace, tmp: Path, registrar: Kamailio) -> dict[str, Any]:
    relay_stamper = InviteStamper(RELAY_PORT, FAR_PORT)
    relay_stamper.start()
    factory = MockFactory(pin_class=StampedPin)
    config = bench_config(tmp, registrar, args.ring_group)
    t_enter = time.monotonic()
    visits: list[dict[str, Any]] = []
    out: dict[str, Any] = {}
    settle = args.heap == "settled"
    async with anyio.create_task_group() as tg, start_app(config, factory, out, settle_heap=settle) as app:
        out["heap_frozen_at_ready"] = getattr(app, "heap_frozen", 0)
        out["ready_from_enter_s"] = time.monotonic() - t_enter
        out["ready_from_process_s"] = time.monotonic() - T_PROCESS
        out["pjsua2"] = dataclasses.asdict(app.sip.info) if getattr(getattr(app, "sip", None), "info", None) else None
        probe = LagProbe()
        first_buffers: list[float] = []
        app.panel.speaker.on_first_buffer = lambda _latency: first_buffers.append(time.monotonic())
        relay: StampedPin = factory.pin(config.relay.pin)
        out["registered_at_start"] = await wait_registered(app)
        # Warm-up visit: first PortAudio stream, first call; "before" is taken after it.
        await press(factory, relay, first_buffers)
        await wait_idle(app)
        # Idle CPU (figure 6) with nothing of the harness in the loop: the lag probe alone wakes it 100
        # times a second. Then, probe running, the idle lag baseline of figure 7.
        out["idle_seconds"] = args.idle_seconds
        cpu0, wall0 = cpu_seconds(), time.monotonic()
        await anyio.sleep(args.idle_seconds)
        out["idle_cpu_percent"] = 100 * (cpu_seconds() - cpu0) / (time.monotonic() - wall0)
        out["registered_after_idle"] = bool(getattr(app, "registered", False))
        tg.start_soon(probe.run)
        probe.active = True
        await anyio.sleep(min(args.idle_seconds, IDLE_LAG_SECONDS))
        probe.active = False
        out["idle_lag_ms"], probe.samples = probe.samples, []
        before = footprint()
        out["memory_before"] = smaps_rollup(os.getpid())  # VmRSS, PSS, USS: figure 9a's "after start" of the app
        invites_before = len(relay_stamper.invites)
        pauses = GcPauses()
        pauses.start()
        for _ in range(args.presses):
            visit = await press(factory, relay, first_buffers)
            visit["idle"] = await wait_idle(app)
            visits.append(visit)
        out["gc"] = pauses.stop()
        out["after"] = footprint()
        out["memory_after"] = smaps_rollup(os.getpid())
        out["before"] = before
        out["invites"] = relay_stamper.invites[invites_before:]
        out["completed"] = _completed(app)
        invites_before = len(relay_stamper.invites)
        out["load"] = await load_phase(args, app, factory, relay, first_buffers, probe, tmp, config)
        out["load"]["invites"] = relay_stamper.invites[invites_before:]
        tg.cancel_scope.cancel()
    out["visits"] = visits
    out["first_buffers"] = first_buffers
    return out


async def load_phase(
    args: argparse.Namespace,
    app: Any,
    factory: MockFactory,
    relay: StampedPin,
    first_buffers: list[float],
    probe: LagProbe,
    tmp: Path,
    config: Config,
) -> dict[str, Any]:
    """Figure 7: sipp calls the panel at ``--load-rate`` from callers it refuses, while presses ring a
    parallel group of ``--ring-group`` legs, in turn with the baseline group of 4 (the far end answers and
    sends the code, sipp rings as the other legs and is cancelled), and the loop's lag is sampled."""
    if args.load_calls <= 0:
        return {}
    from tests.support.sipp_scenarios import render  # the test suite's scenarios: one copy of them

    legs_xml = tmp / "legs.xml"
    legs_xml.write_text(render("uas_never_answer"), encoding="utf-8")
    common = ["-nostdin", "-i", "127.0.0.1", "-mp", str(LEGS_PORT + 2)]
    load_cmd = [
        "sipp",
        "-sn",
        "uac",
        "-r",
        str(args.load_rate),
        "-m",
        str(args.load_calls),
        "-nostdin",
        "-timeout",
        "60",
        "-p",
        str(LOAD_PORT),
        "-i",
        "127.0.0.1",
        "-mp",
        str(LOAD_PORT + 2),
        f"127.0.0.1:{APP_SIP}",
    ]
    try:
        legs = await anyio.open_process(
            ["sipp", "-sf", str(legs_xml), "-p", str(LEGS_PORT), *common],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError as exc:
        return {"error": f"sipp: {exc}"}
    try:
        await anyio.sleep(0.3)  # sipp binds its port
        sipp = await anyio.open_process(load_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        events_before = len(_visit_events(app, config))
        buttons = [GROUP_PIN, BASELINE_PIN] if args.ring_group != BASELINE_GROUP else [GROUP_PIN]
        probe.active = True
        served: list[dict[str, Any]] = []
        while sipp.returncode is None:
            button = buttons[len(served) % len(buttons)]
            visit = await press(factory, relay, first_buffers, within=5.0, button=button)
            visit["group"] = args.ring_group if button == GROUP_PIN else BASELINE_GROUP
            served.append(visit)
            await wait_idle(app, 5.0, settle=0.05)  # figure 7: presses as fast as the visits allow, under sipp's load
        probe.active = False
        if hasattr(app, "visit_log"):
            await app.visit_log.flush()
        legs_seen = _legs_per_visit(_visit_events(app, config)[events_before:])
    finally:
        legs.terminate()
        await legs.wait()
    lag, probe.samples = probe.samples, []
    return {
        "calls": args.load_calls,
        "rate": args.load_rate,
        "ring_group": args.ring_group,
        "baseline_group": BASELINE_GROUP,
        "legs": legs_seen,
        "sipp_status": sipp.returncode,
        "lag_ms": lag,
        "visits": served,
        "presses": len(served),
        "served": sum(1 for v in served if v["opened"] is not None),
        # The machine's own load: on a shared machine, other jobs' CPU shows in the lag (the idle row too).
        "loadavg_1min": os.getloadavg()[0],
    }


def _visit_events(app: Any, config: Config) -> list[dict[str, Any]]:
    """The app's events.jsonl so far (the parts wiring keeps none)."""
    path = Path(config.paths.state_dir) / "events.jsonl"
    if not hasattr(app, "visit_log") or not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _legs_per_visit(events: list[dict[str, Any]]) -> list[dict[str, int]]:
    """Per visit of the load phase: legs dialed, legs that rang (or answered) and legs that failed to dial."""
    visits: dict[str, dict[str, set[str]]] = {}
    for e in events:
        names = visits.setdefault(str(e.get("visit")), {"CALL_START": set(), "RINGING": set(), "DIAL_FAILED": set()})
        if e["event"] in names:
            names[e["event"]].add(str(e["target"]))
        elif e["event"] == "ANSWERED":
            names["RINGING"].add(str(e["target"]))
    return [
        {"dialed": len(v["CALL_START"]), "rang": len(v["RINGING"]), "failed": len(v["DIAL_FAILED"])}
        for v in visits.values()
        if v["CALL_START"]
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presses", type=int, default=20)
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    ap.add_argument("--load-calls", type=int, default=0)
    ap.add_argument("--load-rate", type=int, default=50, help="sipp's calls per second at the panel (figure 7)")
    ap.add_argument(
        "--ring-group",
        type=int,
        default=None,
        help="legs of the parallel group pressed under load (figure 7); default 8 on a pjsua2 that places 8 calls "
        "at once (our source build), 4 on a pjsua2 limited to 4 calls",
    )
    ap.add_argument(
        "--logging",
        choices=LOGGING_MODES,
        default="journal",
        help="the daemon's logging: journal (default, as under systemd: INFO in journald's native protocol to a "
        "reader process), stderr (INFO as journal lines on a pipe a reader drains), none (WARNING, nothing read)",
    )
    ap.add_argument(
        "--heap",
        choices=("settled", "unsettled"),
        default="settled",
        help="settled (default): start-up's objects frozen at READY, as intercomd run does (daemon.heap); "
        "unsettled: every full collection walks them (the daemon before)",
    )
    args = ap.parse_args()
    if args.ring_group is None:
        args.ring_group = default_ring_group()
    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp_name:
        tmp = Path(tmp_name)
        null_alsa(tmp)
        # The resident's phone rings 0.2 s before answering: the flow stops the waiting prompt on answer,
        # and a phone answering within a few ms would cut the prompt before it reaches ALSA.
        with (
            FarEnd(
                FAR_PORT, "--answer-after", "0.2", "--dtmf", "1", "--dtmf-after", "0.3", "--rtp-port", str(FAR_RTP)
            ) as far,
            Kamailio(tmp, {"panel": PANEL_PASSWORD}) as registrar,
            JournalSink(args.logging) as journal,
        ):
            result = anyio.run(drive, args, tmp, registrar)
    result["logging"] = journal.result
    result["dtmf_sent_at"] = far.result.get("dtmf_sent_at", [])
    result["far_end"] = {k: v for k, v in far.result.items() if k != "dtmf_sent_at"}
    emit(result)


if __name__ == "__main__":
    main()
