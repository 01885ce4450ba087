"""The visit state machine, driven event by event with no loop and no I/O."""

from __future__ import annotations

from dataclasses import replace

from daemon.config import Apartment, TimingConfig
from daemon.flow import commands as cmd
from daemon.flow.codes import CodeGuard
from daemon.flow.events import Dtmf, LegAnswered, LegEnded, LegRinging, SecondPress, Start, TimerFired
from daemon.flow.machine import LegStatus, Phase, VisitState, inbound_visit, new_visit, step

TIMING = TimingConfig(
    ring_timeout_seconds=20,
    max_call_seconds=60,
    call_warning_seconds=10,
    hangup_after_open_seconds=2,
    wrong_code_limit=3,
    lockout_seconds=300,
)
PARALLEL = Apartment(
    name="101", buttons=("101",), residents=("sip:a@h", "sip:b@h"), codes=("1234",), fallback="sip:concierge@h"
)
SEQUENTIAL = replace(PARALLEL, strategy="sequential")


def run(state: VisitState, *events: object) -> tuple[VisitState, list[cmd.Command]]:
    out: list[cmd.Command] = []
    for event in events:
        state, commands = step(state, event)  # type: ignore[arg-type]
        out += commands
    return state, out


def of(kind: type, commands: list[cmd.Command]) -> list[cmd.Command]:
    return [c for c in commands if isinstance(c, kind)]


def finish(commands: list[cmd.Command]) -> cmd.Finish:
    (done,) = of(cmd.Finish, commands)
    assert isinstance(done, cmd.Finish)
    return done


def test_start_dials_every_resident_before_the_prompt() -> None:
    state, commands = step(new_visit(PARALLEL, TIMING), Start(sip_ready=True))
    kinds = [type(c) for c in commands if not isinstance(c, cmd.Log)]
    assert kinds[:3] == [cmd.Dial, cmd.Dial, cmd.StartTimer]
    assert kinds.index(cmd.PlayPrompt) > kinds.index(cmd.Dial)
    assert of(cmd.Dial, commands) == [cmd.Dial(0, "sip:a@h"), cmd.Dial(1, "sip:b@h")]
    assert state.phase is Phase.RINGING


def test_parallel_second_leg_answers_and_the_first_is_cancelled() -> None:
    state, commands = run(new_visit(PARALLEL, TIMING), Start(True), LegRinging(0), LegRinging(1), LegAnswered(1))
    assert state.answered == 1
    assert cmd.Hangup(0) in commands and cmd.Hangup(1) not in commands
    assert cmd.StopPrompt() in commands and cmd.ConnectAudio(1) in commands
    assert cmd.CancelTimer("ring") in commands
    # The cancelled leg's 487 arrives later and changes nothing.
    after, more = step(state, LegEnded(0, 487, "Request Terminated"))
    assert after == state and more == []


def test_no_answer_rings_the_fallback_then_says_nobody_answered() -> None:
    state, commands = run(new_visit(PARALLEL, TIMING), Start(True), TimerFired("ring"))
    assert cmd.Dial(2, "sip:concierge@h") in commands and cmd.PlayPrompt("calling_next") in commands
    state, commands = run(state, TimerFired("ring"))
    done = finish(commands)
    assert (done.outcome, done.farewell) == ("no_answer", "nobody_answered")
    assert cmd.Hangup(2) in commands and state.phase is Phase.DONE


def test_sequential_hunt_moves_on_per_leg() -> None:
    state, commands = run(new_visit(SEQUENTIAL, TIMING), Start(True))
    assert of(cmd.Dial, commands) == [cmd.Dial(0, "sip:a@h")]
    state, commands = run(state, LegEnded(0, 480, "Temporarily Unavailable"))
    assert of(cmd.Dial, commands) == [cmd.Dial(1, "sip:b@h")]
    state, commands = run(state, TimerFired("ring"))
    assert of(cmd.Dial, commands) == [cmd.Dial(2, "sip:concierge@h")]
    state, commands = run(state, LegAnswered(2))
    assert state.answered == 2 and state.phase is Phase.CONNECTED


def test_busy_everywhere_says_busy() -> None:
    apt = replace(PARALLEL, fallback="")
    _, commands = run(new_visit(apt, TIMING), Start(True), LegEnded(0, 486, "Busy Here"), LegEnded(1, 603, "Decline"))
    assert (finish(commands).outcome, finish(commands).farewell) == ("busy", "busy")


def test_unreachable_pbx_says_out_of_service() -> None:
    apt = replace(PARALLEL, fallback="")
    _, commands = run(new_visit(apt, TIMING), Start(True), LegEnded(0, 503, ""), LegEnded(1, 408, ""))
    assert finish(commands).farewell == "out_of_service"


def test_registration_down_says_out_of_service_at_once_without_dialing() -> None:
    _, commands = step(new_visit(PARALLEL, TIMING), Start(sip_ready=False))
    assert not of(cmd.Dial, commands)
    assert finish(commands).farewell == "out_of_service"


def answered(apt: Apartment = PARALLEL) -> VisitState:
    state, _ = run(new_visit(apt, TIMING), Start(True), LegAnswered(0))
    return state


def digits(state: VisitState, text: str, leg: int = 0, at: float = 100.0) -> tuple[VisitState, list[cmd.Command]]:
    return run(state, *(Dtmf(leg, d, "rfc2833", at) for d in text))


def test_right_code_opens_then_hangs_up_after_the_delay() -> None:
    state, commands = digits(answered(), "1234")
    assert cmd.PulseDoor() in commands and cmd.PlayPrompt("door_open") in commands
    assert cmd.StartTimer("hangup_after_open", 2) in commands
    # Secrets stay out of the log: digits are masked.
    assert all("1" not in c.text for c in of(cmd.Log, commands) if isinstance(c, cmd.Log))
    state, commands = run(state, TimerFired("hangup_after_open"))
    assert cmd.Hangup(0) in commands and finish(commands).outcome == "door_opened"


def test_resident_hangs_up_before_the_scheduled_hang_up_cancels_it() -> None:
    state, _ = digits(answered(), "1234")
    state, commands = run(state, LegEnded(0, 200, "BYE"))
    assert cmd.CancelTimer("hangup_after_open") in commands
    assert cmd.Hangup(0) not in commands and finish(commands).outcome == "door_opened"
    assert run(state, TimerFired("hangup_after_open"))[1] == []


def test_wrong_codes_lock_out_and_the_lockout_outlives_the_visit() -> None:
    state, commands = digits(answered(), "000011112222")
    assert len([c for c in of(cmd.Log, commands) if isinstance(c, cmd.Log) and c.event == "CODE_REJECTED"]) == 3
    assert any(isinstance(c, cmd.Log) and c.event == "LOCKOUT" for c in commands)
    assert state.guard.locked(100.0)
    # A new visit with the same guard: the right code is refused until the lockout ends.
    again = answered()
    again = replace(again, guard=state.guard)
    locked, commands = digits(again, "1234", at=200.0)
    assert cmd.PulseDoor() not in commands
    _, commands = digits(replace(again, guard=locked.guard), "1234", at=401.0)
    assert cmd.PulseDoor() in commands


def test_digits_from_a_losing_leg_or_before_answer_are_ignored() -> None:
    state, commands = run(new_visit(PARALLEL, TIMING), Start(True))
    _, commands = digits(state, "1234")
    assert cmd.PulseDoor() not in commands
    _, commands = digits(answered(), "1234", leg=1)
    assert cmd.PulseDoor() not in commands


def test_hash_ends_a_short_wrong_code_and_star_clears() -> None:
    state, commands = digits(answered(), "12#")
    assert state.guard.wrong_in_a_row == 1
    state, commands = digits(state, "99*1234")
    assert cmd.PulseDoor() in commands


def test_deadline_tears_everything_down() -> None:
    state, commands = run(new_visit(PARALLEL, TIMING), Start(True), TimerFired("deadline"))
    assert {c for c in commands if isinstance(c, cmd.Hangup)} == {cmd.Hangup(0), cmd.Hangup(1)}
    assert finish(commands).outcome == "deadline"
    assert all(leg.status is not LegStatus.DIALING for leg in state.legs)


def test_second_press_restarts_the_prompt_only_when_configured() -> None:
    state, _ = run(new_visit(PARALLEL, TIMING), Start(True))
    assert cmd.PlayPrompt("waiting") not in step(state, SecondPress())[1]
    state = replace(state, timing=replace(TIMING, second_press="restart_prompt"))
    assert cmd.PlayPrompt("waiting") in step(state, SecondPress())[1]


def test_max_call_time_warns_then_ends() -> None:
    state = answered()
    assert cmd.PlayToCall(0, "call_ending") in step(state, TimerFired("call_warning"))[1]
    _, commands = step(state, TimerFired("max_call"))
    assert cmd.Hangup(0) in commands and finish(commands).outcome == "not_opened"


def test_announce_mode_plays_to_the_resident_instead_of_connecting() -> None:
    state = answered(replace(PARALLEL, mode="announce"))
    _, commands = run(new_visit(replace(PARALLEL, mode="announce"), TIMING), Start(True), LegAnswered(0))
    assert cmd.PlayToCall(0, "announce") in commands and not of(cmd.ConnectAudio, commands)
    assert state.phase is Phase.CONNECTED


def test_inbound_allowlisted_caller_can_open_with_its_code() -> None:
    state, commands = step(inbound_visit("sip:concierge@h", ("9",), TIMING, CodeGuard()), Start(True))
    assert cmd.ConnectAudio(0) in commands
    _, commands = digits(state, "9")
    assert cmd.PulseDoor() in commands
