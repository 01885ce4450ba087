"""``intercomd demo``: the daemon's real code on its embedded default config, as a simulated panel.

What is simulated and how: the panel's pins are gpiozero's ``MockFactory`` (the demo drives the doorbell
pin as a visitor's finger would), and the resident is a real baresip phone on 127.0.0.1 that answers and
types the door code. The panel's sound card is one of (``--audio``):

- ``paced`` (the default when PulseAudio is installed): a private PulseAudio with null sinks, a card with a
  clock, so a 3 s prompt takes 3 s as on a panel; everything the speaker plays is recorded in
  ``<workdir>/speaker.wav``;
- ``file``: ALSA's ``file`` plugin (``<workdir>/alsa/last.wav`` holds the last stream); no clock, so prompts
  "play" in milliseconds;
- ``host``: this machine's own default sound card, to hear the panel through a laptop's speakers.

Everything else (SIP engine, prompts, flow, history, control socket) is the production code path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import wave
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Literal, get_args

import anyio

from daemon.config import Config, PathsConfig, default_config_text, parse_config
from daemon.errors import IntercomError
from daemon.simulation.alsa import write_capture_config
from daemon.simulation.paced_card import PacedCardError, paced_card_as_default
from daemon.simulation.phone import Baresip, free_port

__all__ = ["DEMO_AUDIO", "DemoAudio", "run_demo"]

DemoAudio = Literal["paced", "file", "host"]
DEMO_AUDIO: tuple[DemoAudio, ...] = get_args(DemoAudio)

log = logging.getLogger(__name__)

STEP_TIMEOUT = 20.0


def _say(text: str) -> None:
    sys.stdout.write(f"\n>>> {text}\n")
    sys.stdout.flush()


def demo_config(workdir: Path, resident_uri: str) -> Config:
    """The embedded default, pointed at the demo's phone and working directory."""
    base = parse_config(default_config_text(), "<embedded default>")
    apartments = tuple(replace(apt, residents=(resident_uri,)) for apt in base.apartments)
    return replace(
        base,
        sip=replace(base.sip, bind_address="127.0.0.1", port=free_port(), inbound_allow=()),
        apartments=apartments,
        timing=replace(base.timing, hangup_after_open_seconds=1.0),
        paths=PathsConfig(
            state_dir=str(workdir / "state"), cache_dir=str(workdir / "cache"), runtime_dir=str(workdir / "run")
        ),
    )


async def _press(factory: object, pin: int) -> None:
    mock = factory.pin(pin)  # type: ignore[attr-defined]
    mock.drive_low()  # the button pulls the input to ground
    await anyio.sleep(0.15)  # held longer than min_press_ms: a real press, not noise
    mock.drive_high()


async def _demo(config: Config, phone: Baresip, visits: int) -> int:
    from gpiozero.pins.mock import MockFactory

    from daemon.app import as_facade, running

    factory = MockFactory()
    button = config.buttons[0]
    async with running(config, pin_factory=factory, settle_heap=True) as running_app:  # as intercomd run
        app = as_facade(running_app)  # what the demo may ask of the daemon, as any adapter would
        _say(
            f"panel ready; control socket at {config.paths.runtime_dir}/control.sock "
            f"(try: intercomctl --socket {config.paths.runtime_dir}/control.sock status)"
        )
        for n in range(1, visits + 1):
            _say(f"visit {n}: a visitor presses the doorbell of {button.name!r} (GPIO{button.pin})")
            await _press(factory, button.pin)
            await phone.wait_event("CALL_ESTABLISHED", STEP_TIMEOUT)
            code = config.apartment_for_button(button.name).codes[0]  # type: ignore[union-attr]
            _say(f"the resident answered; after a moment they type the door code {code} on the phone")
            await anyio.sleep(1.0)
            phone.command("sndcode", code)
            with anyio.fail_after(STEP_TIMEOUT):
                await app.wait_visits(n)
        records = await app.history(visits)
    _say("history (newest first):")
    for r in records:
        sys.stdout.write(
            f"    {r['visit']}  apartment {r['apartment']!s:<8} outcome {r['outcome']!s:<12} "
            f"door opened: {'yes' if r['door_opened'] else 'no '}  answered by {r['answered_by']}\n"
        )
    return 0 if records and all(r["door_opened"] for r in records) else 1


def default_audio() -> DemoAudio:
    """The paced card where PulseAudio is installed (./dev.sh setup installs it), else the file capture."""
    return "paced" if shutil.which("pulseaudio") and shutil.which("parec") else "file"


@contextlib.contextmanager
def _panel_sound(audio: DemoAudio, workdir: Path) -> Iterator[None]:
    """Make the chosen card this process's ALSA default (before PortAudio or pjmedia start) for the block."""
    if audio == "host":
        _say("the panel plays through this machine's own default sound card")
        yield
    elif audio == "file":
        # No clock: the file plugin takes samples as fast as they come.
        capture = write_capture_config(workdir / "alsa")
        os.environ["ALSA_CONFIG_PATH"] = str(capture.config_path)
        _say(f"the speaker's samples go to {capture.wav_path} (a file: no clock, prompts take milliseconds)")
        yield
    else:
        with paced_card_as_default(workdir / "card") as card, card.record_speaker(workdir / "speaker.wav") as out:
            _say(f"the panel's card is a paced virtual card (PulseAudio null sinks); its speaker is recorded in {out}")
            yield
        _say(f"the speaker played {_voiced_seconds(out):.1f} s of sound in {_wav_seconds(out):.1f} s ({out})")


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def _voiced_seconds(path: Path, threshold: int = 300) -> float:
    """Seconds of 16-bit mono audio louder than ``threshold`` (in 20 ms blocks): how long something played."""
    with wave.open(str(path), "rb") as wav:
        rate, data = wav.getframerate(), wav.readframes(wav.getnframes())
    block = rate // 50 * 2
    loud = 0
    for start in range(0, len(data) - block + 1, block):
        samples = memoryview(data[start : start + block]).cast("h")
        if max(samples, default=0) > threshold:
            loud += 1
    return loud / 50


def run_demo(visits: int = 1, workdir: Path | None = None, audio: DemoAudio | None = None) -> int:
    """Run ``visits`` simulated visits; 0 when every one ended with the door opened."""
    # A fixed default directory so a second run reuses the prompt cache, as a panel does after reboot.
    workdir = (workdir or Path(tempfile.gettempdir()) / "intercom-demo").resolve()
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a user's --workdir: one line, not a traceback
        log.error("demo failed: cannot use --workdir %s: %s", workdir, exc.strerror or exc)
        return 1
    _say(f"demo working directory: {workdir}")
    try:
        with _panel_sound(audio or default_audio(), workdir), Baresip(workdir, user="101") as phone:
            _say(f"the resident's phone (baresip) is up at {phone.uri}")
            return anyio.run(_demo, demo_config(workdir, phone.uri), phone, visits)
    except (IntercomError, PacedCardError, TimeoutError, RuntimeError, OSError) as exc:
        log.error("demo failed: %s", exc)
        return 1
