"""A command from the loop to the SIP owner thread, and its result travelling back.

The loop creates a :class:`Command`, puts it on the owner's queue, wakes the owner's poll and *awaits*
``done`` with a timeout. The owner thread runs ``fn(owner)`` and hands the outcome back through the
:class:`~daemon.bridge.LoopBridge`, which runs :meth:`Command.finish` on the loop thread. The loop never
blocks on the owner thread: it only awaits an ``anyio.Event``.

``fn`` is typed against :class:`~daemon.sip._pj_owner.PjOwner` (imported for the type checker only: the
owner module loads pjsua2), so strict mypy checks every call the loop asks the owner to make.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

import anyio

if TYPE_CHECKING:
    from daemon.sip._pj_owner import PjOwner

__all__ = ["Command"]

T = TypeVar("T")


class Command(Generic[T]):
    """One unit of pjsua2 work. Created on the loop thread (``anyio.Event`` must be)."""

    def __init__(self, name: str, fn: Callable[[PjOwner], T]) -> None:
        self.name = name
        self.fn = fn
        self.done = anyio.Event()
        self.result: T | None = None
        self.error: BaseException | None = None
        # Set by the loop when it gave up waiting: the owner then skips the command if not yet run.
        self.abandoned = False

    def finish(self, result: T | None, error: BaseException | None) -> None:
        """Runs on the loop thread (via the bridge)."""
        self.result = result
        self.error = error
        self.done.set()

    def __repr__(self) -> str:
        return f"<Command {self.name}>"
