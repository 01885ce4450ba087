"""The bench fixture: the mock factory everywhere, real pins on a Pi (see tests/bench/test_bench.py)."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gpiozero import DigitalInputDevice, DigitalOutputDevice
from gpiozero.pins.mock import MockConnectedPin, MockFactory

from hw.pins import make_pin_factory
from hw.settings import GpioConfig

ENV_PINS = (
    "INTERCOM_BENCH_PRESS_OUT",
    "INTERCOM_BENCH_BUTTON_IN",
    "INTERCOM_BENCH_RELAY_OUT",
    "INTERCOM_BENCH_RELAY_SENSE",
)
MOCK_PINS = {
    "INTERCOM_BENCH_PRESS_OUT": 20,
    "INTERCOM_BENCH_BUTTON_IN": 21,
    "INTERCOM_BENCH_RELAY_OUT": 26,
    "INTERCOM_BENCH_RELAY_SENSE": 19,
}
LOCK_PATH = Path(os.environ.get("INTERCOM_BENCH_LOCK", "/tmp/intercom-bench.lock"))
LOCK_WAIT_S = 120.0


@dataclass
class Bench:
    """Two jumpers: PRESS_OUT -> BUTTON_IN (a pressed button) and RELAY_OUT -> RELAY_SENSE (the relay)."""

    kind: str  # "mock" or the real factory's name
    factory: Any
    press_out: int
    button_in: int
    relay_out: int
    relay_sense: int
    tolerance: float  # seconds allowed on timing checks
    _presser: Any = None

    def presser(self) -> Any:
        """An output on PRESS_OUT at rest high (button released; inputs use the pull-up)."""
        if self._presser is None:
            self._presser = DigitalOutputDevice(self.press_out, initial_value=True, pin_factory=self.factory)
        return self._presser

    def press(self, seconds: float) -> None:
        p = self.presser()
        p.off()  # contact closed to ground
        time.sleep(seconds)
        p.on()

    def sense(self) -> Any:
        return DigitalInputDevice(self.relay_sense, pull_up=False, pin_factory=self.factory)

    def close(self) -> None:
        if self._presser is not None:
            self._presser.close()


def _real_pins() -> dict[str, int] | None:
    if not os.environ.get("INTERCOM_BENCH_FACTORY") or not all(os.environ.get(k) for k in ENV_PINS):
        return None
    return {k: int(os.environ[k]) for k in ENV_PINS}


@pytest.fixture(scope="session")
def bench_lock() -> Iterator[None]:
    """Keep two runs off the real bench: an exclusive flock, waited for up to LOCK_WAIT_S."""
    with LOCK_PATH.open("a") as f:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the bench is busy: {LOCK_PATH} is held by another run")
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(params=["mock", pytest.param("real", marks=pytest.mark.bench_real)])
def bench(request: pytest.FixtureRequest) -> Iterator[Bench]:
    if request.param == "mock":
        factory = MockFactory()
        pins = MOCK_PINS
        # The jumpers: each output drives its input.
        factory.pin(
            pins["INTERCOM_BENCH_PRESS_OUT"],
            pin_class=MockConnectedPin,
            input_pin=factory.pin(pins["INTERCOM_BENCH_BUTTON_IN"]),
        )
        factory.pin(
            pins["INTERCOM_BENCH_RELAY_OUT"],
            pin_class=MockConnectedPin,
            input_pin=factory.pin(pins["INTERCOM_BENCH_RELAY_SENSE"]),
        )
        kind, tolerance = "mock", 0.03
    else:
        real = _real_pins()
        if real is None:
            pytest.skip(f"real bench not configured: set INTERCOM_BENCH_FACTORY and {', '.join(ENV_PINS)}")
        request.getfixturevalue("bench_lock")
        name = os.environ["INTERCOM_BENCH_FACTORY"]
        factory = make_pin_factory(GpioConfig(pin_factory="auto"), environ={"GPIOZERO_PIN_FACTORY": name})
        pins, kind, tolerance = real, name, 0.03
    bench = Bench(
        kind,
        factory,
        pins["INTERCOM_BENCH_PRESS_OUT"],
        pins["INTERCOM_BENCH_BUTTON_IN"],
        pins["INTERCOM_BENCH_RELAY_OUT"],
        pins["INTERCOM_BENCH_RELAY_SENSE"],
        tolerance,
    )
    try:
        yield bench
    finally:
        bench.close()
        factory.close()
        if isinstance(factory, MockFactory):
            factory.reset()
