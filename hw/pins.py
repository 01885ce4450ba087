"""Choosing the gpiozero pin factory from :class:`~hw.settings.GpioConfig`.

Devices never pick a factory themselves: the panel passes the one made here to every device
(``pin_factory=``), so tests and the daemon can run side by side without gpiozero's global default.
"""

from __future__ import annotations

import logging
import os
import warnings
from importlib.metadata import entry_points
from typing import Any

from gpiozero import Device, GPIOZeroError
from gpiozero.pins.mock import MockFactory

from hw.errors import HardwareError
from hw.settings import GpioConfig

__all__ = ["make_pin_factory"]

log = logging.getLogger(__name__)

_NO_GPIO_HINT = (
    "no real GPIO found ({detail}). On a Raspberry Pi install python3-lgpio (or RPi.GPIO) into the daemon's "
    'environment; to run without hardware set gpio.pin_factory = "mock" (or GPIOZERO_PIN_FACTORY=mock)'
)


def make_pin_factory(config: GpioConfig, *, environ: dict[str, str] | None = None) -> Any:
    """Return a gpiozero pin factory for ``config.pin_factory``.

    * ``"mock"``: a fresh :class:`gpiozero.pins.mock.MockFactory` (a simulated panel).
    * ``"auto"``: ``$GPIOZERO_PIN_FACTORY`` if set, else gpiozero's own order (lgpio, rpigpio, pigpio,
      native). Mock is never chosen silently: when no real factory loads this raises
      :class:`HardwareError` saying how to fix it.
    * any other name: that factory, or :class:`HardwareError`.
    """
    env = os.environ if environ is None else environ
    name: str = config.pin_factory
    if name == "mock":
        log.info("gpio: simulated pins (MockFactory)")
        return MockFactory()
    if name == "auto":
        name = env.get("GPIOZERO_PIN_FACTORY", "").strip().lower()
        if not name:
            return _default_order()
        if name == "mock":
            log.warning("gpio: GPIOZERO_PIN_FACTORY=mock: simulated pins, the real panel is NOT driven")
            return MockFactory()
    return _named(name)


def _default_order() -> Any:
    # gpiozero warns (PinFactoryFallback) for each factory it skips; our test suite turns warnings into
    # errors and the daemon wants them in its log, so record them and log them ourselves.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            factory = Device._default_pin_factory()
        except (GPIOZeroError, ImportError, OSError) as exc:
            skipped = "; ".join(str(w.message) for w in caught) or str(exc)
            raise HardwareError(_NO_GPIO_HINT.format(detail=skipped)) from exc
    for w in caught:
        log.info("gpio: %s", w.message)
    if isinstance(factory, MockFactory):  # only possible through a misconfigured entry point
        raise HardwareError(_NO_GPIO_HINT.format(detail="the default factory is a mock"))
    log.info("gpio: using %s", type(factory).__name__)
    return factory


def _named(name: str) -> Any:
    # The same lookup gpiozero does for $GPIOZERO_PIN_FACTORY (entry points, exact then lower-case name),
    # without touching the process environment.
    group = entry_points(group="gpiozero_pin_factories")
    match = [ep for ep in group if ep.name == name] or [ep for ep in group if ep.name == name.lower()]
    if not match:
        raise HardwareError(f"gpio: unknown pin factory {name!r}; installed: {sorted(ep.name for ep in group)}")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            factory = match[0].load()()
    except (GPIOZeroError, ImportError, OSError) as exc:
        raise HardwareError(
            f"gpio: pin factory {name!r} cannot be used: {exc}. " + _NO_GPIO_HINT.split(". ", 1)[1]
        ) from exc
    for w in caught:
        log.info("gpio: %s", w.message)
    log.info("gpio: using %s", type(factory).__name__)
    return factory
