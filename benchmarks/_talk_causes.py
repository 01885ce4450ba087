"""Why each discontinuity of the talk call happened: every step of a chirp's content offset is given one cause from
what was seen on the wire and at the card around it, so the report says which ones are the panel's.

The evidence (times on one monotonic clock):

* **stalls of a sender**: a gap of more than ``STALL_MS`` between two RTP packets of one direction on ``lo``
  (each sender puts a packet on the wire every 20 ms). The phone's stalls are the simulation's (the resident's
  phone runs on another device in reality; here baresip is descheduled on a loaded machine); the panel's are its
  own (its conference clock, which encodes and sends, stopped).
* **stalls of the card**: a gap of more than ``STALL_MS`` between two reads of *both* card recorders at once
  (PulseAudio, the simulated card, stopped handing out audio; a real card's DMA does not stop).
* **the call's start**: the panel's first packet to the phone. The card is opened as the call is set up (a panel
  stall within ``CARD_OPEN_S`` of it is the card opening), and the jitter buffer and pjmedia's delay buffers find
  their level in each direction's first ``SETTLE_S``: both are counted as "call start", the panel's.

Each step lies between two consecutive chirps; a stall that overlaps ``[far time of the earlier chirp - LOOKBACK_S,
far time of the later one]`` explains it (a chirp reaches the far end up to ~0.2 s after the near end). A stall's
effect is then undone over the next seconds (the jitter buffer conceals a gap, then drops the backlog behind it
10-30 ms at a time): the steps of opposite sign that follow within ``RECOVERY_S``, until the offset is back where
it was before the stall, get the same cause. What no stall explains is the panel's own buffering: in the
resident -> visitor direction the jitter buffer (it inserts and drops whole 10 ms frames), in the visitor ->
resident direction the capture side (pjmedia's delay buffer between the card's capture and the conference).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from benchmarks._talk_signal import SETTLE_S, STEP_MS, Pairing

__all__ = [
    "CAUSES",
    "PANEL_CAUSES",
    "AttributedStep",
    "Cause",
    "Evidence",
    "Stall",
    "TalkDirection",
    "attribute",
    "card_stalls",
    "cause_summary",
    "gaps_over",
]

Cause = Literal["phone stall", "card stall", "call start", "panel stall", "jitter buffer", "capture side"]
CAUSES: tuple[Cause, ...] = ("phone stall", "card stall", "call start", "panel stall", "jitter buffer", "capture side")
PANEL_CAUSES: frozenset[Cause] = frozenset({"call start", "panel stall", "jitter buffer", "capture side"})
TalkDirection = Literal["visitor_to_resident", "resident_to_visitor"]

STALL_MS = 60.0  # a sender's packets 20 ms apart: three missing in a row is a stall
LOOKBACK_S = 0.3  # a stall this long before the earlier chirp reached the far end can still move the later one
RECOVERY_S = 15.0  # how long the jitter buffer takes to drop the backlog after a stall (seen: 6-10 s)
CARD_OPEN_S = 2.0  # a panel stall this soon after its first packet is the card opening (seen: 0.3 s)


@dataclass(frozen=True)
class Stall:
    """A stretch with nothing from one source: from ``start`` (the last packet or read before it) to ``end``."""

    start: float
    end: float

    @property
    def ms(self) -> float:
        return 1000 * (self.end - self.start)


@dataclass(frozen=True)
class Evidence:
    """What was seen during the call (monotonic times)."""

    phone_stalls: list[Stall]
    panel_stalls: list[Stall]
    card_stalls: list[Stall]
    call_start: float  # the panel's first packet to the phone


@dataclass(frozen=True)
class AttributedStep:
    when_s: float  # when the later chirp reached the far end, from the direction's first chirp
    size_ms: float  # negative: dropped, positive: inserted
    cause: Cause

    @property
    def panel(self) -> bool:
        return self.cause in PANEL_CAUSES


def gaps_over(times: np.ndarray[Any, Any], limit_ms: float = STALL_MS) -> list[Stall]:
    """Every gap longer than ``limit_ms`` between consecutive ``times`` (sorted, seconds)."""
    at = np.sort(np.asarray(times, dtype=np.float64))
    gaps = np.diff(at) * 1000
    return [Stall(float(at[i]), float(at[i + 1])) for i in np.flatnonzero(gaps > limit_ms)]


def card_stalls(first: list[Stall], second: list[Stall]) -> list[Stall]:
    """Where both recorders of the card waited longer than the limit at once (their overlap): the card stopped, not
    one recorder."""
    both = []
    for a in first:
        for b in second:
            start, end = max(a.start, b.start), min(a.end, b.end)
            if 1000 * (end - start) > STALL_MS:
                both.append(Stall(start, end))
    return both


def _overlaps(stalls: list[Stall], start: float, end: float) -> Stall | None:
    return next((s for s in stalls if s.start <= end and s.end >= start), None)


def attribute(pairing: Pairing, direction: TalkDirection, evidence: Evidence) -> list[AttributedStep]:
    """One cause per discontinuity of ``pairing`` (see the module's docstring for the rules and their order)."""
    offsets = np.asarray(pairing.offsets_ms)
    far = pairing.origin + np.asarray(pairing.times_s)
    steps = np.diff(offsets)
    residual: Cause = "jitter buffer" if direction == "resident_to_visitor" else "capture side"
    out: list[AttributedStep] = []
    pending: dict[Cause, tuple[float, float]] = {}  # per cause: (ms its stalls left to undo, until when)
    for i in np.flatnonzero(np.abs(steps) > STEP_MS):
        size, start, end = float(steps[i]), float(far[i]) - LOOKBACK_S, float(far[i + 1])
        cause = _direct_cause(evidence, direction, start, end)
        if cause is not None:  # what the following steps may undo, summed over one cause's stalls
            pending[cause] = (pending.get(cause, (0.0, 0.0))[0] - size, end + RECOVERY_S)
        else:
            cause = _undoing(pending, size, end)
        if cause is None and end - pairing.origin < SETTLE_S:
            cause = "call start"  # the buffers finding their level in the direction's first seconds
        out.append(AttributedStep(round(float(far[i + 1]) - pairing.origin, 1), round(size, 2), cause or residual))
    return out


def _undoing(pending: dict[Cause, tuple[float, float]], size: float, end: float) -> Cause | None:
    """The cause whose stall's effect a step of ``size`` at ``end`` undoes (the latest stall first), or None."""
    for cause, (left, until) in sorted(pending.items(), key=lambda item: -item[1][1]):
        if end <= until and size * left > 0 and abs(size) <= abs(left) + STEP_MS:
            pending[cause] = (left - size, until)
            return cause
    return None


def _direct_cause(evidence: Evidence, direction: TalkDirection, start: float, end: float) -> Cause | None:
    """The stall overlapping ``[start, end]``. The card's first: it clocks the panel, so a card that stops stops the
    panel's sending too. Then the panel's own, before the phone's: when both stopped at once (the whole machine
    descheduled) the panel is not let off. The phone's only in the direction it feeds."""
    if _overlaps(evidence.card_stalls, start, end) is not None:
        return "card stall"
    if (stall := _overlaps(evidence.panel_stalls, start, end)) is not None:
        return "call start" if stall.start - evidence.call_start < CARD_OPEN_S else "panel stall"
    if direction == "resident_to_visitor" and _overlaps(evidence.phone_stalls, start, end) is not None:
        return "phone stall"
    return None


def cause_summary(steps: list[AttributedStep]) -> dict[str, Any]:
    """Counts and net ms per cause, and how many were the panel's."""
    counts = Counter(s.cause for s in steps)
    return {
        "by_cause": {c: counts[c] for c in CAUSES if counts[c]},
        "net_ms_by_cause": {c: round(sum(s.size_ms for s in steps if s.cause == c), 1) for c in CAUSES if counts[c]},
        "panel": sum(s.panel for s in steps),
        "not_panel": sum(not s.panel for s in steps),
        "steps": [[s.when_s, s.size_ms, s.cause] for s in steps[:80]],
    }
