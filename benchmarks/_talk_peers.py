"""The talk call's simulation kept ahead of the panel for the CPU: the resident's phone (baresip), the paced card
(PulseAudio) and the harness's recorders and sniffer run in a cgroup with a large CPU weight; the panel does not.

Why: in reality the phone is another device and the card a piece of hardware whose DMA never stops. On this
machine (2 cores shared with other jobs) baresip was descheduled for 70-300 ms at a time, and its jitter buffer's
concealment and the catch-up behind it were counted as the panel's discontinuities. The panel's process is put
back in the root cgroup (or in the quota's, which caps it): it competes with the other jobs as before, so its own
stalls stay in the figures. Only the share is changed (no real-time priority: CAP_SYS_NICE is dropped for the
audio tests, and a spinning real-time thread starved PulseAudio once).

cgroup v1 ``cpu.shares`` 8192 (a root task weighs 1024), or v2 ``cpu.weight`` 800 (default 100). Removed on exit.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from benchmarks.cpu_quota import V1_ROOT, V2_ROOT, quota_unavailable

__all__ = ["SHARES_V1", "WEIGHT_V2", "FavouredPeers", "leave_favoured"]

SHARES_V1 = 8192
WEIGHT_V2 = 800


def _root() -> tuple[Path, int]:
    v2 = (V2_ROOT / "cgroup.controllers").exists() and "cpu" in (V2_ROOT / "cgroup.controllers").read_text()
    return (V2_ROOT, 2) if v2 else (V1_ROOT, 1)


def leave_favoured() -> None:
    """Move the calling process back to the root cgroup (a ``preexec_fn`` for the panel's process)."""
    root, _version = _root()
    with contextlib.suppress(OSError):
        (root / "cgroup.procs").write_text(str(os.getpid()))


class FavouredPeers:
    """This process (and so every process it starts from now on) in a cgroup with a large CPU weight.
    ``active`` is False where no cgroup can be made (not root, no cpu controller): nothing is changed then."""

    def __init__(self) -> None:
        self.root, self.version = _root()
        self.path = self.root / f"intercom-talk-peers-{os.getpid()}"
        self.active = False
        self.why_not = quota_unavailable()

    def __enter__(self) -> FavouredPeers:
        if self.why_not is not None:
            return self
        self.path.mkdir()
        if self.version == 2:
            (self.path / "cpu.weight").write_text(str(WEIGHT_V2))
        else:
            (self.path / "cpu.shares").write_text(str(SHARES_V1))
        (self.path / "cgroup.procs").write_text(str(os.getpid()))
        self.active = True
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.active:
            return
        for pid in (self.path / "cgroup.procs").read_text().split():  # ours, and any peer still alive
            with contextlib.suppress(OSError):
                (self.root / "cgroup.procs").write_text(pid)
        with contextlib.suppress(OSError):
            self.path.rmdir()
        self.active = False

    def describe(self) -> str:
        if self.why_not is not None:
            return f"not favoured ({self.why_not})"
        share = f"cpu.weight {WEIGHT_V2}" if self.version == 2 else f"cpu.shares {SHARES_V1}"
        return f"phone, card and harness in a cgroup with {share}; the panel outside it"
