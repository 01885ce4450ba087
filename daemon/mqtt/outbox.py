"""The bounded, drop-oldest queue between the event consumer and the publisher.

The consumer runs on the loop and must never wait (a visit's events would back up behind the broker):
:meth:`Outbox.put` only appends. While the broker is away events pile up to ``bound``; beyond it the oldest
is dropped and counted, so memory stays bounded through an outage of any length. The publisher takes an
event off only once the broker acknowledged it (:meth:`head` then :meth:`done`), so events go out in order
and none is lost to a connection that breaks mid-publish (at-least-once, as MQTT QoS 1 is).
"""

from __future__ import annotations

import logging
from collections import deque

import anyio

from daemon.mqtt.topics import Outgoing

__all__ = ["Outbox"]

log = logging.getLogger(__name__)


class Outbox:
    def __init__(self, bound: int) -> None:
        self._items: deque[tuple[int, Outgoing]] = deque()  # (sequence number, message)
        self._next = 0
        self._bound = bound
        self._wake = anyio.Event()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Outgoing) -> None:
        """Append; never blocks. Beyond the bound the oldest event is dropped (counted, logged sparsely)."""
        if len(self._items) >= self._bound:
            self._items.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning(
                    "mqtt: %d event(s) dropped so far: the broker is away or slow (queue bound %d)",
                    self.dropped,
                    self._bound,
                )
        self._items.append((self._next, item))
        self._next += 1
        self.wake()

    def head(self, count: int = 1) -> list[tuple[int, Outgoing]]:
        """The oldest ``count`` (or fewer) events with their sequence numbers, left queued until :meth:`done`."""
        return [self._items[i] for i in range(min(count, len(self._items)))]

    def done(self, through: int) -> None:
        """The broker has every event up to sequence number ``through``: remove those still queued.

        By number, not by count: while a batch was out, the bound may have dropped some of it for newer ones.
        """
        while self._items and self._items[0][0] <= through:
            self._items.popleft()

    def wake(self) -> None:
        """Tell the publisher there is work (an event, or state that changed)."""
        self._wake.set()

    async def wait(self) -> None:
        """Until :meth:`wake` is called after this call started (the caller checks for work first)."""
        self._wake = anyio.Event()
        await self._wake.wait()
