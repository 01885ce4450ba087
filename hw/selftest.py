"""Self-test of a LIVE panel: the bench's safe checks, run by the control socket's ``selftest`` command.

Safe means a visitor at the door notices nothing but a blink and a short beep: the relay is only pulsed
when a sense input is wired to it (``relay_sense_pin``, a bench or commissioning setup), and every LED
goes back to the state it showed before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import anyio
from gpiozero import DigitalInputDevice, GPIOZeroError

from hw.errors import HardwareError
from hw.leds import PATTERNS, LedState
from hw.panel import Panel
from hw.pcm import PcmFormat, tone
from hw.speaker import PlayResult

__all__ = ["CheckResult", "TonePlayer", "run_selftest"]

log = logging.getLogger(__name__)

SENSE_PULSE_S = 0.2
SENSE_TOLERANCE_S = 0.05
# The relay's own timer ends the pulse; the check looks at the sense input's edges once it is surely over.
SENSE_SETTLE_S = 0.2


class CheckResult(NamedTuple):
    check: str
    passed: bool
    detail: str


# Plays the speaker check's tone the way the panel's owner routes its speaker; None: not played, because a talk
# call's audio has the sound card (the daemon's speaker route: PortAudio would open the card a second time).
TonePlayer = Callable[[bytes, PcmFormat], Awaitable[PlayResult | None]]


async def run_selftest(
    panel: Panel, *, relay_sense_pin: int | None = None, tone_seconds: float = 0.3, play: TonePlayer | None = None
) -> list[CheckResult]:
    """Run every safe check against ``panel`` (whose :meth:`Panel.run` must be running for the relay
    pulse) and return one :class:`CheckResult` per check, in order. ``play``: how the speaker's tone is played
    (default: the panel's speaker directly)."""
    results = _relays_at_rest(panel)
    if relay_sense_pin is not None:
        results.append(await _relay_sense(panel, relay_sense_pin))
    results += await _leds(panel)
    results += _inputs(panel)
    results.append(await _speaker(panel, tone_seconds, play or panel.speaker.play))
    for r in results:
        log.log(
            logging.INFO if r.passed else logging.ERROR,
            "selftest %s: %s (%s)",
            r.check,
            "pass" if r.passed else "FAIL",
            r.detail,
        )
    return results


def _relays_at_rest(panel: Panel) -> list[CheckResult]:
    """One row per door ("relay at rest (garage)"); a one-door panel's row keeps its plain name."""
    rows = []
    for door, relay in panel.relays.items():
        name = "relay at rest" if len(panel.relays) == 1 else f"relay at rest ({door})"
        if relay.energized:
            rows.append(CheckResult(name, True, "skipped: a pulse is running"))
        else:
            rows.append(CheckResult(name, True, f"de-energized{', blocked by tamper' if relay.blocked else ''}"))
    return rows


async def _relay_sense(panel: Panel, sense_pin: int) -> CheckResult:
    name = f"relay sense GPIO{sense_pin}"
    try:
        sense = DigitalInputDevice(sense_pin, pull_up=False, pin_factory=panel.pin_factory)
    except (GPIOZeroError, OSError) as exc:
        return CheckResult(name, False, f"cannot use the sense pin: {exc}")
    # The sense input reads the driver's input level: high while energized unless the module is active-low.
    energized_level = panel.config.door_list[0].relay.active_high  # the sense is wired to the first door's relay
    try:
        if panel.relay.energized or bool(sense.is_active) == energized_level:
            return CheckResult(name, False, "sense does not read the relay's rest level (wiring?)")
        # Stamped by gpiozero's callback thread; read on the loop once the pulse is over. Nothing here crosses into
        # the loop from another thread: the check simply waits out the pulse.
        releases: list[float] = []

        def on_release() -> None:
            releases.append(time.monotonic())

        if energized_level:
            sense.when_deactivated = on_release
        else:
            sense.when_activated = on_release
        start = time.monotonic()
        try:
            if not panel.relay.open(SENSE_PULSE_S):
                return CheckResult(name, True, "skipped: relay blocked by tamper")
        except HardwareError as exc:
            return CheckResult(name, False, str(exc))
        seen_on = bool(sense.is_active) == energized_level
        await anyio.sleep(SENSE_PULSE_S + SENSE_SETTLE_S)
        if not releases:
            return CheckResult(
                name, False, f"sense never saw the relay release after a {SENSE_PULSE_S * 1000:.0f} ms pulse"
            )
        length = releases[0] - start
        ok = seen_on and abs(length - SENSE_PULSE_S) <= SENSE_TOLERANCE_S
        return CheckResult(
            name,
            ok,
            f"pulse {length * 1000:.0f} ms for {SENSE_PULSE_S * 1000:.0f} ms"
            f"{'' if seen_on else ', sense never went active'}",
        )
    finally:
        sense.close()


async def _leds(panel: Panel) -> list[CheckResult]:
    leds = panel.leds
    if leds is None or not leds.names:
        return [CheckResult("leds", True, "none configured")]
    previous = leds.state
    failures: list[str] = []
    try:
        for state in (LedState.IDLE, LedState.FAULT):
            leds.show(state, force=True)
            await anyio.sleep(0.01)
            for name in leds.names:
                steady = PATTERNS[state].get(name)
                if steady is not None and steady.steady is not None and leds.is_lit(name) != steady.steady:
                    failures.append(f"{name} not {'lit' if steady.steady else 'dark'} for {state.value}")
        leds.show(LedState.DOOR_OPEN, force=True)  # blinks 0.1/0.1 s: both levels within 0.5 s
        # Sample the status LED for 0.5 s: it blinks 0.1/0.1 s, so both levels must show up.
        if "status" in leds.names:
            levels = set()
            for _ in range(50):
                levels.add(leds.is_lit("status"))
                await anyio.sleep(0.01)
            if len(levels) < 2:
                failures.append("status does not blink")
    finally:
        leds.show(previous or LedState.IDLE, force=True)
    return [CheckResult("leds", not failures, "; ".join(failures) or f"{', '.join(leds.names)} follow every pattern")]


def _inputs(panel: Panel) -> list[CheckResult]:
    out = []
    if panel.tamper is not None:
        out.append(CheckResult("tamper", not panel.tamper.tampered, "TAMPERED" if panel.tamper.tampered else "closed"))
    if panel.door is not None:
        out.append(CheckResult("door contact", True, "door open" if panel.door.is_open else "door closed"))
    stuck = [name for name, b in panel.buttons.items() if b.is_active]
    out.append(
        CheckResult(
            "buttons", not stuck, f"stuck pressed: {', '.join(stuck)}" if stuck else f"{len(panel.buttons)} released"
        )
    )
    return out


async def _speaker(panel: Panel, seconds: float, play: TonePlayer) -> CheckResult:
    pcm, fmt = tone(880.0, seconds)
    result = await play(pcm, fmt)
    if result is None:
        return CheckResult("speaker", True, "not played: a call's audio has the sound card (run it again after)")
    if not result.ok:
        return CheckResult("speaker", False, str(result.error))
    latency = result.first_buffer_latency or 0.0
    return CheckResult(
        "speaker",
        True,
        f"{result.frames} frames to {panel.config.audio.output_device!r}, first buffer after {latency * 1000:.1f} ms",
    )
