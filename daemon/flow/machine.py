"""The visit as a pure state machine: ``step(state, event) -> (state, commands)``.

No I/O, no clock, no loop: the runner (:mod:`daemon.flow.runner`) feeds it events (SIP, timers, DTMF,
presses, the relay's answer) with the time they happened, and executes the commands it returns in order.
Legs (one call to one address) are named by their index in ``state.legs``; the router maps SIP call
handles to indexes, so a late event from an ended call can only ever reach the leg it belonged to.

Stages: the parallel strategy rings every resident at once (stage 0); sequential rings one resident per
stage. A configured fallback (e.g. the concierge) is the last stage. Every stage has its own ring timeout.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from daemon.config import Apartment, TimingConfig
from daemon.flow import commands as cmd
from daemon.flow.codes import Lockout, Verdict, abandon_typed, enter_digit
from daemon.flow.events import (
    DoorRefused,
    DoorUnlocked,
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
from daemon.flow.vocabulary import LedPattern, Outcome, Prompt, Timer

__all__ = ["Leg", "LegStatus", "Phase", "VisitState", "inbound_visit", "new_visit", "step"]

# SIP statuses meaning "we could not reach the PBX or the network", as opposed to "the resident did not
# pick up": when every leg ends this way the visitor hears "out of service" rather than "nobody answered".
UNREACHABLE = frozenset({0, 408, 502, 503, 504})
BUSY = frozenset({486, 600})
DIGIT_TIMEOUT = 10.0
# A phone set to send each key both ways (RFC 2833 and SIP INFO) reports every key twice: the same key by the
# other method this soon after is that key's echo, not a second press ("4711" would arrive as "44771111").
DTMF_ECHO_WINDOW = 0.5


class Phase(enum.IntEnum):
    NEW = 0
    RINGING = 1
    CONNECTED = 2
    OPENING = 3  # a right code was typed; the relay's answer (DoorUnlocked / DoorRefused) comes next
    DOOR_OPENED = 4
    DOOR_REFUSED = 5
    DONE = 6


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
    reason: str = ""
    reached: bool = False  # the far end answered us at all (ringing, a final status not in UNREACHABLE)
    failed_locally: bool = False  # the INVITE never left the panel

    @property
    def live(self) -> bool:
        return self.status in (LegStatus.DIALING, LegStatus.RINGING, LegStatus.ANSWERED)


@dataclass(frozen=True)
class VisitState:
    apartment: Apartment
    timing: TimingConfig
    legs: tuple[Leg, ...]
    lockout: Lockout  # the apartment's, carried from visit to visit by the router
    phase: Phase = Phase.NEW
    stage: int = -1
    answered: int | None = None
    typed: str = ""  # digits typed on the answered call so far; never carried to another call
    typed_at: float = 0.0  # monotonic time of the last of them (the machine has no clock of its own)
    last_key: tuple[str, str, float] | None = None  # (key, method, at) of the last key read: see DTMF_ECHO_WINDOW
    door_opened: bool = False
    door_refused: str = ""  # why the relay refused the accepted code ("" when it did not)
    door: str = ""  # the door the accepted code opened (its name, once the relay answered)
    inbound: bool = False

    def __repr__(self) -> str:
        return f"<VisitState {self.phase.name} apt={self.apartment.name} stage={self.stage} answered={self.answered}>"

    @property
    def stages(self) -> int:
        return max(leg.stage for leg in self.legs) + 1


Result = tuple[VisitState, list[cmd.Command]]


def new_visit(apartment: Apartment, timing: TimingConfig, lockout: Lockout | None = None) -> VisitState:
    """The state before :class:`Start`: one leg per resident (plus the fallback), grouped into stages."""
    if apartment.strategy == "parallel":
        legs = [Leg(uri, 0) for uri in apartment.residents]
    else:
        legs = [Leg(uri, i) for i, uri in enumerate(apartment.residents)]
    if apartment.fallback:
        legs.append(Leg(apartment.fallback, legs[-1].stage + 1))
    return VisitState(apartment, timing, tuple(legs), lockout or Lockout())


def inbound_visit(apartment: Apartment, timing: TimingConfig, lockout: Lockout | None = None) -> VisitState:
    """An allowlisted caller who called the panel (``apartment.residents[0]``): already answered, may open
    with ``apartment.codes`` (config's ``inbound_codes``)."""
    leg = Leg(apartment.residents[0], 0, LegStatus.ANSWERED)
    return VisitState(apartment, timing, (leg,), lockout or Lockout(), stage=0, inbound=True)


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
        case LegEnded():
            return _ended(state, event)
        case Dtmf():
            return _dtmf(state, event)
        case DoorUnlocked(door=door):
            return _door_unlocked(state, door)
        case DoorRefused(reason=reason):
            return _door_refused(state, reason)
        case TimerFired(name=name):
            return _timer(state, name)
        case SecondPress():
            if state.phase is Phase.RINGING and state.timing.second_press == "restart_prompt":
                return state, [cmd.Log("SECOND_PRESS", "visitor", "prompt restarted"), cmd.PlayPrompt(Prompt.WAITING)]
            return state, [cmd.Log("SECOND_PRESS", "visitor", "ignored: visit in progress")]
        case PromptDone():
            return state, []
    raise TypeError(f"unknown flow event {event!r}")


def _start(state: VisitState, event: Start) -> Result:
    if state.phase is not Phase.NEW:
        return state, []
    deadline = cmd.StartTimer(Timer.DEADLINE, state.timing.visit_deadline_seconds)
    if state.inbound:
        state = replace(state, phase=Phase.CONNECTED, answered=0)
        return state, [
            cmd.Log("ANSWERED", state.legs[0].uri, "inbound call answered"),
            deadline,
            cmd.ConnectAudio(0),
            *_call_timers(state),
            cmd.ShowLeds(LedPattern.IN_CALL),
        ]
    if not event.sip_ready:
        return _finish(state, Outcome.OUT_OF_SERVICE, Prompt.OUT_OF_SERVICE, "SIP registration is down")
    state, dials = _dial_stage(state, 0)
    # Dial first: the INVITE must not wait behind the prompt.
    return state, [*dials, cmd.PlayPrompt(Prompt.WAITING), deadline, cmd.ShowLeds(LedPattern.CALLING)]


def _dial_stage(state: VisitState, stage: int) -> Result:
    legs = list(state.legs)
    out: list[cmd.Command] = []
    for i, leg in enumerate(legs):
        if leg.stage == stage:
            legs[i] = replace(leg, status=LegStatus.DIALING)
            out += [cmd.Log("CALL_START", leg.uri, f"stage {stage}"), cmd.Dial(i, leg.uri)]
    out.append(cmd.StartTimer(Timer.RING, state.timing.ring_timeout_seconds))
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
    state = replace(state, phase=Phase.CONNECTED, answered=i, typed="")
    out: list[cmd.Command] = [cmd.CancelTimer(Timer.RING), cmd.StopPrompt(), cmd.Log("ANSWERED", leg.uri, "")]
    state, hangups = _hangup_others(state, keep=i, why="another leg answered")
    out += hangups
    if state.apartment.mode == "announce":
        out.append(cmd.PlayToCall(i, Prompt.ANNOUNCE))
    else:
        out.append(cmd.ConnectAudio(i))
    return state, [*out, *_call_timers(state), cmd.ShowLeds(LedPattern.IN_CALL)]


def _call_timers(state: VisitState) -> list[cmd.Command]:
    t = state.timing
    out: list[cmd.Command] = [cmd.StartTimer(Timer.MAX_CALL, t.max_call_seconds)]
    if t.call_warning_seconds > 0:
        out.append(cmd.StartTimer(Timer.CALL_WARNING, t.max_call_seconds - t.call_warning_seconds))
    return out


def _hangup_others(state: VisitState, keep: int | None, why: str) -> Result:
    out: list[cmd.Command] = []
    for j, other in enumerate(state.legs):
        if j != keep and other.live:
            state = _set_leg(state, j, status=LegStatus.ENDED, code=487)
            out += [cmd.Hangup(j), cmd.Log("HANGUP", other.uri, why)]
    return state, out


def _call_outcome(state: VisitState) -> tuple[Outcome, Prompt | None]:
    """How an answered call ends, and what the visitor still has to hear (None: they heard it already)."""
    if state.door_opened:
        return Outcome.DOOR_OPENED, None
    if state.door_refused:
        return Outcome.DOOR_REFUSED, None  # "the door was not opened" was said when the relay refused
    return Outcome.NOT_OPENED, Prompt.DOOR_NOT_OPENED


def _ended(state: VisitState, event: LegEnded) -> Result:
    i, code, reason = event.leg, event.code, event.reason
    leg = state.legs[i]
    if not leg.live:
        return state, []  # we hung it up ourselves already; its final status changes nothing
    was_answered = leg.status is LegStatus.ANSWERED
    reached = leg.reached or (not event.local and code not in UNREACHABLE)
    state = _set_leg(
        state, i, status=LegStatus.ENDED, code=code, reason=reason, reached=reached, failed_locally=event.local
    )
    if event.local:
        out: list[cmd.Command] = [cmd.Log("DIAL_FAILED", leg.uri, f"not sent: {reason}".strip())]
    else:
        out = [cmd.Log("HANGUP", leg.uri, f"{code} {reason}".strip())]
    if was_answered:
        state, dropped = _drop_typed(state, state.typed_at)  # the call's digits end with the call
        out += [*dropped, cmd.CancelTimer(Timer.HANGUP_AFTER_OPEN)]
        # A normal BYE from the resident ends with 200; anything else (a media timeout, 408) says why.
        why = "resident hung up" if code in (0, 200) else f"call ended: {code} {reason}".strip()
        outcome, farewell = _call_outcome(state)
        detail = f"{why} after opening" if state.door_opened else why
        s, fin = _finish(state, outcome, farewell, state.door_refused or detail)
        return s, out + fin
    if state.phase is Phase.RINGING and not any(x.live for x in state.legs if x.stage == state.stage):
        s, more = _next_stage(state)
        return s, out + more
    return state, out


def _next_stage(state: VisitState) -> Result:
    if state.stage + 1 < state.stages:
        state, dials = _dial_stage(state, state.stage + 1)
        return state, [cmd.Log("NEXT_STAGE", "", f"stage {state.stage}"), cmd.PlayPrompt(Prompt.CALLING_NEXT), *dials]
    ended = [leg for leg in state.legs if leg.status is LegStatus.ENDED]
    tried = [leg.code for leg in ended]
    if ended and all(leg.failed_locally for leg in ended):
        # Not one INVITE left the panel: a local fault (call slots full, an unroutable URI), never "no answer".
        why = "; ".join(f"{leg.uri}: {leg.reason or 'refused by the SIP engine'}" for leg in ended)
        return _finish(state, Outcome.DIAL_FAILED, Prompt.OUT_OF_SERVICE, f"no call could be placed: {why}")
    if ended and not any(leg.reached for leg in ended):
        return _finish(state, Outcome.OUT_OF_SERVICE, Prompt.OUT_OF_SERVICE, f"no leg reachable: {tried}")
    if any(code in BUSY for code in tried):
        return _finish(state, Outcome.BUSY, Prompt.BUSY, f"statuses {tried}")
    return _finish(state, Outcome.NO_ANSWER, Prompt.NOBODY_ANSWERED, f"statuses {tried}")


def _dtmf(state: VisitState, event: Dtmf) -> Result:
    leg = state.legs[event.leg]
    if state.answered is None or event.leg != state.answered or state.phase is Phase.RINGING:
        return state, [cmd.Log("DTMF_IGNORED", leg.uri, f"{event.method}: not from the answered call")]
    if state.phase is not Phase.CONNECTED:
        return state, [cmd.Log("DTMF", leg.uri, f"{event.method}: ignored, the code was already accepted")]
    last = state.last_key
    if (
        last is not None
        and last[1] != event.method
        and last[0] == event.digit
        and event.at - last[2] < DTMF_ECHO_WINDOW
    ):
        return state, [cmd.Log("DTMF_IGNORED", leg.uri, f"{event.method}: the same key again by the other method")]
    state = replace(state, last_key=(event.digit, event.method, event.at))
    t = state.timing
    entered = state.typed if event.digit == "#" else state.typed + event.digit
    lockout, typed, verdict = enter_digit(
        state.lockout,
        state.typed,
        event.digit,
        state.apartment.all_codes,
        now=event.at,
        limit=t.wrong_code_limit,
        lockout_seconds=t.lockout_seconds,
    )
    state = replace(state, lockout=lockout, typed=typed, typed_at=event.at)
    out: list[cmd.Command] = [cmd.Log("DTMF", leg.uri, f"{event.method}: *")]
    if verdict is Verdict.PENDING:
        return state, [*out, cmd.StartTimer(Timer.DIGITS, DIGIT_TIMEOUT)]
    out.append(cmd.CancelTimer(Timer.DIGITS))
    if verdict is Verdict.ACCEPTED:
        # Nothing is said or logged as open yet: only the relay's answer (DoorUnlocked) may say so.
        door = state.apartment.door_for(entered) or ""  # accepted: it is one of the apartment's codes
        return replace(state, phase=Phase.OPENING), [*out, cmd.PulseDoor(door)]
    if verdict is Verdict.LOCKED:
        return state, [*out, cmd.Log("CODE_REJECTED", leg.uri, "codes locked out")]
    out += [cmd.Log("CODE_REJECTED", leg.uri, "wrong code"), cmd.PlayToCall(event.leg, Prompt.CODE_REJECTED)]
    if verdict is Verdict.LOCKOUT_STARTED:
        out.append(cmd.Log("LOCKOUT", leg.uri, f"{t.wrong_code_limit} wrong codes: locked {t.lockout_seconds:g} s"))
    return state, out


def _door_unlocked(state: VisitState, door: str) -> Result:
    if state.phase is not Phase.OPENING or state.answered is None:
        return state, []
    leg = state.answered
    state = replace(state, phase=Phase.DOOR_OPENED, door_opened=True, door=door)
    return state, [
        cmd.Log("DOOR_OPEN", state.legs[leg].uri, f"code accepted: {door}" if door else "code accepted"),
        cmd.PlayToCall(leg, Prompt.CODE_ACCEPTED),
        cmd.PlayPrompt(Prompt.DOOR_OPEN),
        cmd.ShowLeds(LedPattern.DOOR_OPEN),
        cmd.StartTimer(Timer.HANGUP_AFTER_OPEN, state.timing.hangup_after_open_seconds),
    ]


def _door_refused(state: VisitState, reason: str) -> Result:
    if state.phase is not Phase.OPENING or state.answered is None:
        return state, []
    leg = state.answered
    state = replace(state, phase=Phase.DOOR_REFUSED, door_refused=reason or "relay refused")
    # Both sides hear that the door stayed shut; the call then ends as it would after an opening.
    return state, [
        cmd.Log("DOOR_OPEN_REFUSED", state.legs[leg].uri, f"code accepted, relay refused: {state.door_refused}"),
        cmd.PlayToCall(leg, Prompt.DOOR_NOT_OPENED),
        cmd.PlayPrompt(Prompt.DOOR_NOT_OPENED),
        cmd.StartTimer(Timer.HANGUP_AFTER_OPEN, state.timing.hangup_after_open_seconds),
    ]


def _timer(state: VisitState, name: Timer) -> Result:
    if name is Timer.RING and state.phase is Phase.RINGING:
        live = [(j, leg) for j, leg in enumerate(state.legs) if leg.live]
        for j, _ in live:
            # Nobody refused the INVITE within the ring time: that is "no answer", not "unreachable".
            state = _set_leg(state, j, status=LegStatus.ENDED, code=408, reached=True)
        out: list[cmd.Command] = []
        for j, leg in live:
            out += [cmd.Hangup(j), cmd.Log("HANGUP", leg.uri, "ring timeout")]
        s, more = _next_stage(state)
        return s, out + more
    if name is Timer.DIGITS:
        state, out = _drop_typed(state, state.typed_at + DIGIT_TIMEOUT)
        if out and state.answered is not None:  # the unfinished guess counted: the caller hears it was wrong
            out.append(cmd.PlayToCall(state.answered, Prompt.CODE_REJECTED))
        return state, out
    if name is Timer.CALL_WARNING and state.answered is not None:
        # Both sides hear it: the resident in the call, the visitor at the gate (through the call's own audio
        # path while it holds the card: daemon/speaker_route.py).
        warn: list[cmd.Command] = [
            cmd.PlayToCall(state.answered, Prompt.CALL_ENDING),
            cmd.PlayPrompt(Prompt.CALL_ENDING),
        ]
        return state, [*warn, cmd.Log("CALL_WARNING", "", "")]
    if name in (Timer.MAX_CALL, Timer.HANGUP_AFTER_OPEN) and state.answered is not None:
        outcome, farewell = _call_outcome(state)
        detail = "maximum call time" if name is Timer.MAX_CALL else "hang-up after open"
        return _finish(state, outcome, farewell, state.door_refused or detail)
    if name is Timer.DEADLINE:
        outcome = _call_outcome(state)[0] if state.door_opened or state.door_refused else Outcome.DEADLINE
        return _finish(state, outcome, None, state.door_refused or "visit deadline reached")
    return state, []


def _finish(state: VisitState, outcome: Outcome, farewell: Prompt | None, detail: str) -> Result:
    state, dropped = _drop_typed(state, state.typed_at)  # a visit cut short (max call time, deadline) mid-code
    state, hangups = _hangup_others(state, keep=None, why=detail)
    state = replace(state, phase=Phase.DONE)
    return state, [*dropped, *hangups, cmd.Finish(outcome, farewell, detail), cmd.ShowLeds(LedPattern.IDLE)]


UNFINISHED = "unfinished code"


def _drop_typed(state: VisitState, now: float) -> Result:
    """Forget this call's digits. A whole guess left unfinished counts as a wrong code (see flow/codes.py),
    so leaving each guess without ``#`` (``*``, waiting, hanging up) never skips the lockout."""
    if not state.typed:
        return state, []
    t = state.timing
    lockout, verdict = abandon_typed(
        state.lockout,
        state.typed,
        state.apartment.codes,
        now=now,
        limit=t.wrong_code_limit,
        lockout_seconds=t.lockout_seconds,
    )
    state = replace(state, lockout=lockout, typed="")
    if verdict is None or state.answered is None:
        return state, []
    uri = state.legs[state.answered].uri
    out: list[cmd.Command] = [cmd.Log("CODE_REJECTED", uri, UNFINISHED)]
    if verdict is Verdict.LOCKOUT_STARTED:
        out.append(cmd.Log("LOCKOUT", uri, f"{t.wrong_code_limit} wrong codes: locked {t.lockout_seconds:g} s"))
    return state, out
