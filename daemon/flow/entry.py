"""The keypad's typing, run in the loop: keys go to the pure machine (:mod:`daemon.flow.keypad`), its deadline
is a timer here, and what it decides (feedback, a number to call, a PIN to check) goes to ``on_action``.

The router owns one :class:`KeypadEntry` and runs :meth:`KeypadEntry.run` in its task group. Nothing here logs a
key: the digits typed may be an access PIN.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio

from daemon.flow.keypad import KeypadAction, KeypadLimits, KeypadState, expire, press

__all__ = ["KeypadEntry"]


class KeypadEntry:
    def __init__(self, limits: KeypadLimits, on_action: Callable[[KeypadAction], None]) -> None:
        self.limits = limits
        self._on_action = on_action
        self._state = KeypadState()
        self._changed = anyio.Event()

    @property
    def state(self) -> KeypadState:
        return self._state

    def key(self, key: str, at: float) -> None:
        """One key, stamped with its edge's monotonic time."""
        self._state, actions = press(self._state, key, at, self.limits)
        self._wake()
        for action in actions:
            self._on_action(action)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def run(self) -> None:
        """Sleep until the entry's deadline (or a new key moves it), then let time pass in the machine."""
        while True:
            changed = self._changed
            deadline = self._state.deadline(self.limits)
            if deadline is None:
                await changed.wait()
                continue
            with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                await changed.wait()
                continue
            self._state, actions = expire(self._state, time.monotonic(), self.limits)
            for action in actions:
                self._on_action(action)
