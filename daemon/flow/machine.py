"""The visit as a pure state machine: ``step(state, event) -> (state, commands)``.

No I/O, no clock, no loop: the runner (:mod:`daemon.flow.runner`) feeds it events (SIP, timers, DTMF,
presses) with the time they happened, and executes the commands it returns in order. Legs (one call to one
address) are named by their index in ``state.legs``; the runner maps SIP call handles to indexes, so a late
event from an ended call can only ever reach the leg it belonged to.

Stages: the parallel strategy rings every resident at once (stage 0); sequential rings one resident per
stage. A configured fallback (e.g. the concierge) is the last stage. Every stage has its own ring timeout.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from daemon.config import Apartment, TimingConfig
from daemon.flow import commands as cmd
from daemon.flow.codes import CodeGuard, Verdict, enter_digit
from daemon.flow.events import (
    Dtmf,
    FlowEvent,
    LegAnswered,
    LegEnded,
    LegRinging,
    PromptDone,
    SecondPress,
    Start,
    TimerFired,
)

__all__ = ["Leg", "LegStatus", "Phase", "VisitState", "new_visit", "step"]

# SIP statuses meaning "we could not reach the PBX or the network", as opposed to "the resident did not
# pick up": when every leg ends this way the visitor hears "out of service" rather than "nobody answered".
UNREACHABLE = frozenset({0, 408, 502, 503, 504})
BUSY = frozenset({486, 600})
DIGIT_TIMEOUT = 10.0


class Phase(enum.IntEnum):
    NEW = 0
    RINGING = 1
    CONNECTED = 2
    DOOR_OPENED = 3
    DONE = 4


class LegStatus(enum.IntEnum):
    WAITING = 0  # a later stage
    DIALING = 1
    RINGING = 2
    ANSWERED = 3
    ENDED = 4


@dataclass(frozen=True)
class Leg:
    uri: str
    stage: int
    status: LegStatus = LegStatus.WAITING
    code: int = 0  # final SIP status once ENDED (0: no response at all)
    reached: bool = False  # the far end answered us at all (ringing, a final status not in UNREACHABLE)

    @property
    def live(self) -> bool:
        return self.status in (LegStatus.DIALING, LegStatus.RINGING, LegStatus.ANSWERED)


@dataclass(frozen=True)
class VisitState:
    apartment: Apartment
    timing: TimingConfig
    legs: tuple[Leg, ...]
    guard: CodeGuard
    phase: Phase = Phase.NEW
    stage: int = -1
    answered: int | None = None
    door_opened: bool = False
    inbound: bool = False

    def __repr__(self) -> str:
        return f"<VisitState {self.phase.name} apt={self.apartment.name} stage={self.stage} answered={self.answered}>"

    @property
    def stages(self) -> int:
        return max(leg.stage for leg in self.legs) + 1


Result = tuple[VisitState, list[cmd.Command]]


def new_visit(apartment: Apartment, timing: TimingConfig, guard: CodeGuard | None = None) -> VisitState:
    """The state before :class:`Start`: one leg per resident (plus the fallback), grouped into stages."""
    if apartment.strategy == "parallel":
        legs = [Leg(uri, 0) for uri in apartment.residents]
    else:
        legs = [Leg(uri, i) for i, uri in enumerate(apartment.residents)]
    if apartment.fallback:
        legs.append(Leg(apartment.fallback, legs[-1].stage + 1))
    return VisitState(apartment, timing, tuple(legs), guard or CodeGuard())


def inbound_visit(caller: str, codes: tuple[str, ...], timing: TimingConfig, guard: CodeGuard) -> VisitState:
    """An allowlisted caller who called the panel: already answered, may open with ``codes``."""
    apartment = Apartment(name="inbound", buttons=(), residents=(caller,), codes=codes)
    leg = Leg(caller, 0, LegStatus.ANSWERED)
    return VisitState(apartment, timing, (leg,), guard, phase=Phase.NEW, stage=0, inbound=True)


def step(state: VisitState, event: FlowEvent) -> Result:
    """Advance the visit by one event. Events that do not apply in the current phase change nothing."""
    if state.phase is Phase.DONE:
        return state, []
    match event:
        case Start():
            return _start(state, event)
        case LegRinging(leg=i):
            return _ringing(state, i)
        case LegAnswered(leg=i):
            return _answered(state, i)
        case LegEnded(leg=i, code=code, reason=reason):
            return _ended(state, i, code, reason)
        case Dtmf():
            return _dtmf(state, event)
        case TimerFired(name=name):
            return _timer(state, name)
        case SecondPress():
            if state.phase is Phase.RINGING and state.timing.second_press == "restart_prompt":
                return state, [cmd.Log("SECOND_PRESS", "visitor", "prompt restarted"), cmd.PlayPrompt("waiting")]
            return state, [cmd.Log("SECOND_PRESS", "visitor", "ignored: visit in progress")]
        case PromptDone():
            return state, []
    raise TypeError(f"unknown flow event {event!r}")


def _start(state: VisitState, event: Start) -> Result:
    if state.phase is not Phase.NEW:
        return state, []
    deadline = cmd.StartTimer("deadline", state.timing.visit_deadline_seconds)
    if state.inbound:
        state = replace(state, phase=Phase.CONNECTED, answered=0)
        return state, [
            cmd.Log("ANSWERED", state.legs[0].uri, "inbound call answered"),
            deadline,
            cmd.ConnectAudio(0),
            *_call_timers(state),
            cmd.ShowLeds("in_call"),
        ]
    if not event.sip_ready:
        return _finish(state, "out_of_service", "out_of_service", "SIP registration is down")
    state, dials = _dial_stage(state, 0)
    # Dial first: the INVITE must not wait behind the prompt.
    return state, [*dials, cmd.PlayPrompt("waiting"), deadline, cmd.ShowLeds("calling")]


def _dial_stage(state: VisitState, stage: int) -> Result:
    legs = list(state.legs)
    out: list[cmd.Command] = []
    for i, leg in enumerate(legs):
        if leg.stage == stage:
            legs[i] = replace(leg, status=LegStatus.DIALING)
            out += [cmd.Log("CALL_START", leg.uri, f"stage {stage}"), cmd.Dial(i, leg.uri)]
    out.append(cmd.StartTimer("ring", state.timing.ring_timeout_seconds))
    return replace(state, legs=tuple(legs), stage=stage, phase=Phase.RINGING), out


def _set_leg(state: VisitState, i: int, **changes: object) -> VisitState:
    legs = list(state.legs)
    legs[i] = replace(legs[i], **changes)  # type: ignore[arg-type]
    return replace(state, legs=tuple(legs))


def _ringing(state: VisitState, i: int) -> Result:
    if state.legs[i].status is not LegStatus.DIALING:
        return state, []
    state = _set_leg(state, i, status=LegStatus.RINGING, reached=True)
    return state, [cmd.Log("RINGING", state.legs[i].uri, "")]


def _answered(state: VisitState, i: int) -> Result:
    leg = state.legs[i]
    if not leg.live or leg.status is LegStatus.ANSWERED:
        return state, []
    if state.phase is not Phase.RINGING:
        # A second leg answered in the same instant as the winner: it loses and is hung up.
        return _set_leg(state, i, status=LegStatus.ENDED), [cmd.Hangup(i), cmd.Log("HANGUP", leg.uri, "lost race")]
    state = _set_leg(state, i, status=LegStatus.ANSWERED, reached=True)
    state = replace(state, phase=Phase.CONNECTED, answered=i)
    out: list[cmd.Command] = [cmd.CancelTimer("ring"), cmd.StopPrompt(), cmd.Log("ANSWERED", leg.uri, "")]
    state, hangups = _hangup_others(state, keep=i, why="another leg answered")
    out += hangups
    if state.apartment.mode == "announce":
        out.append(cmd.PlayToCall(i, "announce"))
    else:
        out.append(cmd.ConnectAudio(i))
    return state, [*out, *_call_timers(state), cmd.ShowLeds("in_call")]


def _call_timers(state: VisitState) -> list[cmd.Command]:
    t = state.timing
    out: list[cmd.Command] = [cmd.StartTimer("max_call", t.max_call_seconds)]
    if t.call_warning_seconds > 0:
        out.append(cmd.StartTimer("call_warning", t.max_call_seconds - t.call_warning_seconds))
    return out


def _hangup_others(state: VisitState, keep: int | None, why: str) -> Result:
    out: list[cmd.Command] = []
    for j, other in enumerate(state.legs):
        if j != keep and other.live:
            state = _set_leg(state, j, status=LegStatus.ENDED, code=487)
            out += [cmd.Hangup(j), cmd.Log("HANGUP", other.uri, why)]
    return state, out


def _ended(state: VisitState, i: int, code: int, reason: str) -> Result:
    leg = state.legs[i]
    if not leg.live:
        return state, []  # we hung it up ourselves already; its final status changes nothing
    was_answered = leg.status is LegStatus.ANSWERED
    state = _set_leg(state, i, status=LegStatus.ENDED, code=code, reached=leg.reached or code not in UNREACHABLE)
    out: list[cmd.Command] = [cmd.Log("HANGUP", leg.uri, f"{code} {reason}".strip())]
    if was_answered:
        out.append(cmd.CancelTimer("hangup_after_open"))
        # A normal BYE from the resident ends with 200; anything else (a media timeout, 408) says why.
        why = "resident hung up" if code in (0, 200) else f"call ended: {code} {reason}".strip()
        if state.door_opened:
            s, fin = _finish(state, "door_opened", None, f"{why} after opening")
        else:
            s, fin = _finish(state, "not_opened", "door_not_opened", why)
        return s, out + fin
    if state.phase is Phase.RINGING and not any(x.live for x in state.legs if x.stage == state.stage):
        s, more = _next_stage(state)
        return s, out + more
    return state, out


def _next_stage(state: VisitState) -> Result:
    if state.stage + 1 < state.stages:
        state, dials = _dial_stage(state, state.stage + 1)
        return state, [cmd.Log("NEXT_STAGE", "", f"stage {state.stage}"), cmd.PlayPrompt("calling_next"), *dials]
    ended = [leg for leg in state.legs if leg.status is LegStatus.ENDED]
    tried = [leg.code for leg in ended]
    if ended and not any(leg.reached for leg in ended):
        return _finish(state, "out_of_service", "out_of_service", f"no leg reachable: {tried}")
    if any(code in BUSY for code in tried):
        return _finish(state, "busy", "busy", f"statuses {tried}")
    return _finish(state, "no_answer", "nobody_answered", f"statuses {tried}")


def _dtmf(state: VisitState, event: Dtmf) -> Result:
    leg = state.legs[event.leg]
    if state.phase not in (Phase.CONNECTED, Phase.DOOR_OPENED) or event.leg != state.answered:
        return state, [cmd.Log("DTMF_IGNORED", leg.uri, f"{event.method}: not from the answered call")]
    if state.phase is Phase.DOOR_OPENED:
        return state, [cmd.Log("DTMF", leg.uri, f"{event.method}: door already open")]
    t = state.timing
    guard, verdict = enter_digit(
        state.guard,
        event.digit,
        state.apartment.codes,
        now=event.at,
        limit=t.wrong_code_limit,
        lockout_seconds=t.lockout_seconds,
    )
    state = replace(state, guard=guard)
    out: list[cmd.Command] = [cmd.Log("DTMF", leg.uri, f"{event.method}: *")]
    if verdict is Verdict.PENDING:
        return state, [*out, cmd.StartTimer("digits", DIGIT_TIMEOUT)]
    out.append(cmd.CancelTimer("digits"))
    if verdict is Verdict.ACCEPTED:
        state = replace(state, phase=Phase.DOOR_OPENED, door_opened=True)
        return state, [
            *out,
            cmd.PulseDoor(),
            cmd.Log("DOOR_OPEN", leg.uri, "code accepted"),
            cmd.PlayToCall(event.leg, "code_accepted"),
            cmd.PlayPrompt("door_open"),
            cmd.ShowLeds("door_open"),
            cmd.StartTimer("hangup_after_open", t.hangup_after_open_seconds),
        ]
    if verdict is Verdict.LOCKED:
        return state, [*out, cmd.Log("CODE_REJECTED", leg.uri, "codes locked out")]
    out += [cmd.Log("CODE_REJECTED", leg.uri, "wrong code"), cmd.PlayToCall(event.leg, "code_rejected")]
    if verdict is Verdict.LOCKOUT_STARTED:
        out.append(cmd.Log("LOCKOUT", leg.uri, f"{t.wrong_code_limit} wrong codes: locked {t.lockout_seconds:g} s"))
    return state, out


def _timer(state: VisitState, name: str) -> Result:
    if name == "ring" and state.phase is Phase.RINGING:
        live = [(j, leg) for j, leg in enumerate(state.legs) if leg.live]
        for j, _ in live:
            # Nobody refused the INVITE within the ring time: that is "no answer", not "unreachable".
            state = _set_leg(state, j, status=LegStatus.ENDED, code=408, reached=True)
        out: list[cmd.Command] = []
        for j, leg in live:
            out += [cmd.Hangup(j), cmd.Log("HANGUP", leg.uri, "ring timeout")]
        s, more = _next_stage(state)
        return s, out + more
    if name == "digits":
        return replace(state, guard=replace(state.guard, buffer="")), []
    if name == "call_warning" and state.answered is not None:
        return state, [cmd.PlayToCall(state.answered, "call_ending"), cmd.Log("CALL_WARNING", "", "")]
    if name in ("max_call", "hangup_after_open") and state.answered is not None:
        outcome = "door_opened" if state.door_opened else "not_opened"
        farewell = None if state.door_opened else "door_not_opened"
        return _finish(state, outcome, farewell, "maximum call time" if name == "max_call" else "hang-up after open")
    if name == "deadline":
        outcome = "door_opened" if state.door_opened else "deadline"
        return _finish(state, outcome, None, "visit deadline reached")
    return state, []


def _finish(state: VisitState, outcome: str, farewell: str | None, detail: str) -> Result:
    state, hangups = _hangup_others(state, keep=None, why=detail)
    state = replace(state, phase=Phase.DONE)
    return state, [*hangups, cmd.Finish(outcome, farewell, detail), cmd.ShowLeds("idle")]
