"""Building-intercom daemon: doorbell -> spoken prompts -> SIP call -> DTMF -> door relay."""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("pi-intercom")  # one place: pyproject.toml's [project] version
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
