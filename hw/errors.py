"""hw/'s own errors: one root, leaves that also inherit the closest builtin (as gpiozero's do).

hw/ imports nothing from daemon/. The daemon translates these into its own hierarchy at the boundary where it
calls the panel (:func:`daemon.errors.hw_errors`), so daemon code catches only ``IntercomError`` and below.
"""

from __future__ import annotations

__all__ = ["AudioError", "HardwareError", "HwError"]


class HwError(Exception):
    """Root of every error hw/ raises on purpose."""


class HardwareError(HwError, OSError):
    """A GPIO device could not be set up or driven."""


class AudioError(HardwareError):
    """The speaker (or microphone) device is missing, busy or failed mid-stream."""
