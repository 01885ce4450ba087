"""The talk tests reuse the SIP tests' loop bridge fixture and the scenarios' prompt cache."""

from tests.scenario.conftest import prompt_cache
from tests.sip.conftest import bridge

__all__ = ["bridge", "prompt_cache"]
