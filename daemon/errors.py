"""One error hierarchy for the whole daemon.

Library errors (``pjsua2.Error``, ``OSError`` from ALSA or sockets, gpiozero's ``GPIOZeroError``) are
translated into these at the adapter that calls the library, so the rest of the code catches our types
only. Leaves also inherit the closest builtin, as gpiozero does (``BadPinFactory(GPIOZeroError,
ImportError)``), so generic handlers keep working.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hw import errors as hw

__all__ = [
    "AudioError",
    "CallGoneError",
    "ConfigError",
    "ControlError",
    "DialError",
    "HardwareError",
    "IntercomError",
    "SipError",
    "hw_errors",
    "translate_hw_error",
]


class IntercomError(Exception):
    """Root of every error this daemon raises on purpose."""


class ConfigError(IntercomError, ValueError):
    """The configuration is invalid. ``problems`` holds every problem found, not just the first."""

    def __init__(self, problems: list[str] | str, source: str = "<config>") -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} configuration problem(s):\n{lines}")


class SipError(IntercomError, RuntimeError):
    """pjsua2 refused or failed an operation. ``info`` carries ``pj.Error.info()`` (its str() is empty)."""

    local = False  # True for failures that happened in this process, before any SIP exchange (DialError)

    def __init__(self, message: str, *, info: str = "", status: int = 0) -> None:
        self.info = info
        self.status = status
        super().__init__(f"{message}: {info}" if info else message)


class DialError(SipError):
    """A dial that failed locally, in pjsua, before anything was sent: every call slot taken (PJ_ETOOMANY,
    70010), an undialable URI (e.g. 171042), no account. It is not a SIP status and must not be reported as
    one (nobody was reached): ``status`` is 0, ``pj_status`` keeps pjsua's code, the message says why."""

    local = True

    def __init__(self, message: str, *, pj_status: int = 0) -> None:
        super().__init__(message)
        self.pj_status = pj_status


class CallGoneError(SipError, LookupError):
    """A command named a call that has already ended (its handle's generation is stale)."""


class HardwareError(IntercomError, OSError):
    """A GPIO device could not be set up or driven (hw/'s :class:`hw.errors.HardwareError`, translated)."""


class AudioError(HardwareError):
    """The speaker (or microphone) device is missing, busy or failed mid-stream."""


def translate_hw_error(exc: hw.HwError) -> HardwareError:
    """hw/'s error as the daemon's: hw/ knows nothing of :class:`IntercomError`."""
    return AudioError(str(exc)) if isinstance(exc, hw.AudioError) else HardwareError(str(exc))


@contextmanager
def hw_errors() -> Iterator[None]:
    """Wrap calls into hw/: its errors leave as the daemon's (``HardwareError``/``AudioError``)."""
    try:
        yield
    except hw.HwError as exc:
        raise translate_hw_error(exc) from exc


class ControlError(IntercomError, ValueError):
    """A control-socket request was malformed or not allowed."""
