"""Shared helpers for the SIP engine tests: a config on free ports, an engine per test, event waits.

Each test gets its own engine (its own Endpoint): creating and destroying the pjsua2 Endpoint repeatedly
in one process, each time on a new owner thread, was measured to work (libDestroy ~20 ms each).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from daemon.bridge import LoopBridge
from daemon.config import SipAccountConfig, SipConfig
from daemon.sip import CallHandle, SipEngine, SipEvent
from tests.support.peers import free_port, write_tones_wav

E = TypeVar("E")


def make_config(**changes: Any) -> SipConfig:
    """A SipConfig on a free UDP port with a free RTP range below 32768; ``account`` may be a dict."""
    account = {"uri": "sip:panel@127.0.0.1", **changes.pop("account", {})}
    base = SipConfig(
        bind_address="127.0.0.1",
        port=free_port(),
        rtp_port=21000 + (free_port() % 50) * 200,
        account=SipAccountConfig(**account),
    )
    return replace(base, **changes)


class EventLog:
    """Everything an engine emitted, searchable in any order: ``await log.wait(CallAnswered, handle)``.

    A plain "next event of this kind" would lose events that came first in another order (MediaActive
    can precede CallAnswered); here each wait takes the oldest matching event not yet taken.
    """

    def __init__(self, engine: SipEngine) -> None:
        self.engine = engine
        self.history: list[SipEvent] = []
        self._taken: set[int] = set()

    def _find(self, kind: type[E], handle: CallHandle | None) -> E | None:
        for i, event in enumerate(self.history):
            if (
                i not in self._taken
                and isinstance(event, kind)
                and (handle is None or getattr(event, "handle", None) == handle)
            ):
                self._taken.add(i)
                return event
        return None

    async def wait(self, kind: type[E], handle: CallHandle | None = None, timeout: float = 10.0) -> E:
        with anyio.fail_after(timeout):
            while (found := self._find(kind, handle)) is None:
                self.history.append(await self.engine.events.receive())
        return found

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.history if isinstance(e, kind)]

    def drain(self) -> None:
        """Pull whatever is already buffered into ``history`` without waiting."""
        while True:
            try:
                self.history.append(self.engine.events.receive_nowait())
            except anyio.WouldBlock:
                return


@pytest.fixture
async def bridge() -> AsyncIterator[LoopBridge]:
    b = LoopBridge()
    yield b
    b.close()


@pytest.fixture
def tone_wav(tmp_path: Path) -> Path:
    """A distinctive 16 kHz prompt: four tones of 2 s total, recognisable after G.711 in a recording."""
    return write_tones_wav(tmp_path / "prompt.wav", [(500, 0.5), (1000, 0.5), (1500, 0.5), (700, 0.5)], rate=16000)
