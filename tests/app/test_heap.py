"""daemon.heap: what start-up left alive is frozen out of every later collection; what dies later still goes."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from daemon import heap


class Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the test session's objects stay collectable


def _tracked(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects())  # the permanent generation is not in gc.get_objects()


def test_settle_freezes_what_is_alive_and_collects_what_is_not() -> None:
    kept = Node()
    garbage = Node()
    gone = weakref.ref(garbage)
    del garbage
    frozen = heap.settle()
    assert gone() is None, "the cycle that was already garbage is collected before the freeze"
    assert frozen == gc.get_freeze_count() > 0
    assert not _tracked(kept), "a survivor of start-up is out of every later collection's walk"


def test_objects_made_after_settling_are_collected_as_before() -> None:
    heap.settle()
    later = Node()
    gone = weakref.ref(later)
    assert _tracked(later)
    del later
    gc.collect()
    assert gone() is None


def test_settling_again_collects_a_frozen_cycle_that_became_garbage() -> None:
    node = Node()
    gone = weakref.ref(node)
    heap.settle()
    del node
    gc.collect()
    assert gone() is not None, "frozen: a collection does not walk it (the price daemon.heap names)"
    heap.settle()
    assert gone() is None, "a second settle unfreezes, collects, then freezes what is left"
