"""The heap start-up leaves behind, settled once at READY so that no garbage collection walks it again.

CPython's cyclic collector walks every object it tracks in a full (generation 2) collection, holding the GIL: no
thread of the process runs meanwhile, not the loop, not the SIP owner, not a PortAudio writer. What start-up leaves
alive (the imports, pjsua2's wrappers, anyio, the configuration, the prompt set) is most of what a running panel
tracks, and it lives until the process exits: walking it finds nothing to free. Measured in figure 1's harness
(docs/benchmarks.md 9b): a full collection took 18 ms on an x86 core and 119 ms under the Pi-sized CPU quota, and a
press that landed in one waited for it (figure 2's p99 123 ms in that run).

:func:`settle` collects once, then moves every object still alive into the interpreter's permanent generation
(``gc.freeze``), which collections skip; what visits allocate later is collected as before. The price: a reference
cycle among frozen objects that later becomes garbage is never freed. Objects freed by their reference count (most)
are unaffected; the memory benchmark's 1,000 visits run on a settled heap, and a configuration reload replaces
frozen dataclasses, which hold no cycles.

A process-wide setting: the entry points call it (``intercomd run``, the demo, the benchmarks that stand for
them); an app run by a test does not, so a test session's objects stay collectable.
"""

from __future__ import annotations

import gc

__all__ = ["settle"]


def settle() -> int:
    """Collect, then freeze what is left (again if called again: what was frozen before is collected first).
    Returns how many objects are now frozen. Runs a full collection itself: call it where a pause is harmless."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
