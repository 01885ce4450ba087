"""Building-intercom daemon: doorbell -> spoken prompts -> SIP call -> DTMF -> door relay."""

__all__ = ["__version__"]

__version__ = "0.1.0"
