"""Access PINs typed at the keypad, evaluated one at a time in a task of the router's group.

The guard (:class:`daemon.access.PinGuard`) is panel-wide and outlives reloads and restarts (each change is
handed to ``on_guard_change``, which saves it): a brute force cannot reset it by spreading guesses over PINs, doors
or configurations, nor by getting the daemon restarted. A PIN typed while the keypad's PINs are locked is refused
without being evaluated, when it is typed and again when its turn comes (the PIN just before may have started
the lockout). The slow hash runs in one worker thread, never on the loop. Nothing here logs a PIN: only who it
turned out to be (its label), which door, and how.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from daemon.access import AccessPin, PinGuard
from daemon.config import Config
from daemon.flow.keypad import Tone
from daemon.flow.ports import VisitLogPort
from daemon.flow.vocabulary import Prompt

__all__ = ["KEYPAD", "PinDesk"]

KEYPAD = "keypad"


class PinDesk:
    """``check_soon(pin, config)`` from the loop; :meth:`run` in the router's task group."""

    def __init__(
        self,
        visit_log: VisitLogPort,
        *,
        say: Callable[[Prompt], None],
        tone: Callable[[Tone], None],
        open_door: Callable[[str, str, str], bool],
        guard: PinGuard | None = None,
        on_guard_change: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._log = visit_log
        self._say, self._tone, self._open = say, tone, open_door
        self.guard = guard or PinGuard()
        self._on_guard_change = on_guard_change
        self._limiter = anyio.CapacityLimiter(1)  # scrypt in one worker thread
        # Unbounded but slow to fill: each PIN takes a visitor several keys, and a lockout empties it unevaluated.
        send, receive = anyio.create_memory_object_stream[tuple[str, Config]](math.inf)
        self._send: MemoryObjectSendStream[tuple[str, Config]] = send
        self._receive: MemoryObjectReceiveStream[tuple[str, Config]] = receive

    def check_soon(self, pin: str, config: Config) -> None:
        if not config.pins:
            self._refused(KEYPAD, "no access PINs on this panel")  # refused without looking at it
        elif self.guard.locked(time.monotonic()):
            self._refused(KEYPAD, "locked out: not evaluated")
        else:
            self._send.send_nowait((pin, config))

    async def run(self) -> None:
        async with self._send, self._receive:
            async for pin, config in self._receive:
                await self._check(pin, config)

    def _refused(self, who: str, why: str) -> None:
        self._log.event("-", "PIN_REFUSED", who, why)
        self._tone(Tone.ERROR)

    async def _check(self, pin: str, config: Config) -> None:
        if self.guard.locked(time.monotonic()):  # a lockout begun by the PIN evaluated just before
            self._refused(KEYPAD, "locked out: not evaluated")
            return
        found = await anyio.to_thread.run_sync(config.pin_book.lookup, pin, limiter=self._limiter)
        del pin  # what was typed is not needed any more: only who it was
        before = self.guard
        self._judge(found, config)
        if self.guard != before and self._on_guard_change is not None:
            await self._on_guard_change()  # saved before the next PIN is evaluated

    def _judge(self, found: AccessPin | None, config: Config) -> None:
        if found is None:
            self._wrong(config)
        elif not found.valid_at(datetime.now()):  # windows are in the panel's local time
            self._refused(found.label, "outside its window")
            self._say(Prompt.DOOR_NOT_OPENED)
        else:
            self.guard = self.guard.after_good()
            for door in found.doors:
                self._open(door, found.label, "pin")

    def _wrong(self, config: Config) -> None:
        policy = config.access.policy
        self.guard, locked, alarm = self.guard.after_wrong(time.monotonic(), policy)
        attempts = self.guard.wrong_since_good
        self._log.event("-", "PIN_REJECTED", KEYPAD, "wrong PIN", attempts=attempts)
        if locked:
            seconds = self.guard.locked_until - time.monotonic()
            self._log.event("-", "PIN_LOCKOUT", KEYPAD, f"keypad PINs locked {seconds:.0f} s", attempts=attempts)
        if alarm:
            # A tamper-style alarm: MQTT publishes it, `intercomctl events` shows it.
            self._log.event("-", "PIN_ALARM", KEYPAD, f"{attempts} wrong PINs since the last good one")
        self._tone(Tone.ERROR)
        self._say(Prompt.CODE_REJECTED)
