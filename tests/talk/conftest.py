"""The talk tests reuse the SIP tests' loop bridge fixture."""

from tests.sip.conftest import bridge

__all__ = ["bridge"]
