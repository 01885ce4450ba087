"""The talk call's simulation kept ahead of the panel for the CPU: the resident's phone (baresip), the paced card
(PulseAudio) and the harness's recorders and sniffer run in a cgroup with a large CPU weight; the panel does not.

Why: in reality the phone is another device and the card a piece of hardware whose DMA never stops. On this
machine (2 cores shared with other jobs) baresip was descheduled for 70-300 ms at a time, and its jitter buffer's
concealment and the catch-up behind it were counted as the panel's discontinuities. The panel's process is put
back in the root cgroup (or in the quota's, which caps it): it competes with the other jobs as before, so its own
stalls stay in the figures. Only the share is changed (no real-time priority: CAP_SYS_NICE is dropped for the
audio tests, and a spinning real-time thread starved PulseAudio once).

cgroup v1 ``cpu.shares`` 8192 (a root task weighs 1024), or v2 ``cpu.weight`` 800 (default 100). Removed on exit.

``panel_shares`` (``--panel-shares``, off by default): the panel in a cgroup of its own with that weight (v1
shares; v2 scaled), or its quota's cgroup given it, above the machine's other jobs and below the phone and the
card: a panel alone on its device, as on a Pi, where nothing else competes. A diagnosis: the figures then show what
is left when the other jobs on this machine do not delay the panel.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from benchmarks.cpu_quota import V1_ROOT, V2_ROOT, quota_unavailable

__all__ = ["SHARES_V1", "WEIGHT_V2", "FavouredPeers"]

SHARES_V1 = 8192
WEIGHT_V2 = 800


def _root() -> tuple[Path, int]:
    v2 = (V2_ROOT / "cgroup.controllers").exists() and "cpu" in (V2_ROOT / "cgroup.controllers").read_text()
    return (V2_ROOT, 2) if v2 else (V1_ROOT, 1)


def _set_weight(group: Path, version: int, shares: int) -> None:
    if version == 2:
        (group / "cpu.weight").write_text(str(max(1, min(10000, shares * 100 // 1024))))
    else:
        (group / "cpu.shares").write_text(str(shares))


class FavouredPeers:
    """This process (and so every process it starts from now on) in a cgroup with a large CPU weight.
    ``active`` is False where no cgroup can be made (not root, no cpu controller): nothing is changed then."""

    def __init__(self, panel_shares: int = 0) -> None:
        self.root, self.version = _root()
        self.path = self.root / f"intercom-talk-peers-{os.getpid()}"
        self.panel_path = self.root / f"intercom-talk-panel-{os.getpid()}"
        self.panel_shares = panel_shares
        self.active = False
        self.why_not = quota_unavailable()

    def panel_join(self) -> None:
        """Put the calling process where the panel runs without a quota (a ``preexec_fn``)."""
        target = self.panel_path if self.active and self.panel_shares else self.root
        with contextlib.suppress(OSError):
            (target / "cgroup.procs").write_text(str(os.getpid()))

    def weigh_quota(self, quota_path: Path) -> None:
        """Give the quota's cgroup the panel's weight (with ``panel_shares``)."""
        if self.active and self.panel_shares:
            _set_weight(quota_path, self.version, self.panel_shares)

    def __enter__(self) -> FavouredPeers:
        if self.why_not is not None:
            return self
        self.path.mkdir()
        _set_weight(self.path, self.version, SHARES_V1)
        if self.panel_shares:
            self.panel_path.mkdir()
            _set_weight(self.panel_path, self.version, self.panel_shares)
        (self.path / "cgroup.procs").write_text(str(os.getpid()))
        self.active = True
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.active:
            return
        for group in (self.path, self.panel_path):
            if not group.exists():
                continue
            for pid in (group / "cgroup.procs").read_text().split():  # ours, and any process still alive
                with contextlib.suppress(OSError):
                    (self.root / "cgroup.procs").write_text(pid)
            with contextlib.suppress(OSError):
                group.rmdir()
        self.active = False

    def describe(self) -> str:
        if self.why_not is not None:
            return f"not favoured ({self.why_not})"
        share = f"cpu.weight {WEIGHT_V2}" if self.version == 2 else f"cpu.shares {SHARES_V1}"
        panel = (
            f"the panel in a cgroup of weight {self.panel_shares} (shares), above the machine's other jobs"
            if self.panel_shares
            else "the panel outside it, competing with the machine's other jobs"
        )
        return f"phone, card and harness in a cgroup with {share}; {panel}"
