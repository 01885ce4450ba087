"""The visit state machine, driven event by event with no loop and no I/O."""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

from daemon.config import Apartment, TimingConfig
from daemon.flow import commands as cmd
from daemon.flow.codes import Lockout
from daemon.flow.events import (
    DoorRefused,
    DoorUnlocked,
    Dtmf,
    LegAnswered,
    LegEnded,
    LegRinging,
    SecondPress,
    Start,
    TimerFired,
)
from daemon.flow.machine import LegStatus, Phase, VisitState, inbound_visit, new_visit, step
from daemon.flow.vocabulary import LedPattern, Outcome, Prompt, Timer

C = TypeVar("C")

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


def of(kind: type[C], commands: list[cmd.Command]) -> list[C]:
    return [c for c in commands if isinstance(c, kind)]


def logged(commands: list[cmd.Command]) -> list[str]:
    return [c.event for c in of(cmd.Log, commands)]


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
    assert cmd.CancelTimer(Timer.RING) in commands
    # The cancelled leg's 487 arrives later and changes nothing.
    after, more = step(state, LegEnded(0, 487, "Request Terminated"))
    assert after == state and more == []


def test_no_answer_rings_the_fallback_then_says_nobody_answered() -> None:
    state, commands = run(new_visit(PARALLEL, TIMING), Start(True), TimerFired(Timer.RING))
    assert cmd.Dial(2, "sip:concierge@h") in commands and cmd.PlayPrompt(Prompt.CALLING_NEXT) in commands
    state, commands = run(state, TimerFired(Timer.RING))
    done = finish(commands)
    assert (done.outcome, done.farewell) == (Outcome.NO_ANSWER, Prompt.NOBODY_ANSWERED)
    assert cmd.Hangup(2) in commands and state.phase is Phase.DONE


def test_sequential_hunt_moves_on_per_leg() -> None:
    state, commands = run(new_visit(SEQUENTIAL, TIMING), Start(True))
    assert of(cmd.Dial, commands) == [cmd.Dial(0, "sip:a@h")]
    state, commands = run(state, LegEnded(0, 480, "Temporarily Unavailable"))
    assert of(cmd.Dial, commands) == [cmd.Dial(1, "sip:b@h")]
    state, commands = run(state, TimerFired(Timer.RING))
    assert of(cmd.Dial, commands) == [cmd.Dial(2, "sip:concierge@h")]
    state, commands = run(state, LegAnswered(2))
    assert state.answered == 2 and state.phase is Phase.CONNECTED


def test_busy_everywhere_says_busy() -> None:
    apt = replace(PARALLEL, fallback="")
    _, commands = run(new_visit(apt, TIMING), Start(True), LegEnded(0, 486, "Busy Here"), LegEnded(1, 603, "Decline"))
    assert (finish(commands).outcome, finish(commands).farewell) == (Outcome.BUSY, Prompt.BUSY)


def test_unreachable_pbx_says_out_of_service() -> None:
    apt = replace(PARALLEL, fallback="")
    _, commands = run(new_visit(apt, TIMING), Start(True), LegEnded(0, 503, ""), LegEnded(1, 408, ""))
    assert finish(commands).farewell is Prompt.OUT_OF_SERVICE


def test_registration_down_says_out_of_service_at_once_without_dialing() -> None:
    _, commands = step(new_visit(PARALLEL, TIMING), Start(sip_ready=False))
    assert not of(cmd.Dial, commands)
    assert finish(commands).farewell is Prompt.OUT_OF_SERVICE


def answered(apt: Apartment = PARALLEL) -> VisitState:
    state, _ = run(new_visit(apt, TIMING), Start(True), LegAnswered(0))
    return state


def digits(state: VisitState, text: str, leg: int = 0, at: float = 100.0) -> tuple[VisitState, list[cmd.Command]]:
    """Type ``text``; a PulseDoor is answered as the real runner does when the relay energizes."""
    out: list[cmd.Command] = []
    for d in text:
        state, commands = step(state, Dtmf(leg, d, "rfc2833", at))
        out += commands
        if cmd.PulseDoor() in commands:
            state, commands = step(state, DoorUnlocked())
            out += commands
    return state, out


def test_right_code_opens_then_hangs_up_after_the_delay() -> None:
    state, commands = digits(answered(), "1234")
    assert cmd.PulseDoor() in commands and cmd.PlayPrompt(Prompt.DOOR_OPEN) in commands
    assert cmd.StartTimer(Timer.HANGUP_AFTER_OPEN, 2) in commands
    # Secrets stay out of the log: digits are masked.
    assert all("1" not in c.text for c in of(cmd.Log, commands) if isinstance(c, cmd.Log))
    state, commands = run(state, TimerFired(Timer.HANGUP_AFTER_OPEN))
    assert cmd.Hangup(0) in commands and finish(commands).outcome is Outcome.DOOR_OPENED


def test_resident_hangs_up_before_the_scheduled_hang_up_cancels_it() -> None:
    state, _ = digits(answered(), "1234")
    state, commands = run(state, LegEnded(0, 200, "BYE"))
    assert cmd.CancelTimer(Timer.HANGUP_AFTER_OPEN) in commands
    assert cmd.Hangup(0) not in commands and finish(commands).outcome is Outcome.DOOR_OPENED
    assert run(state, TimerFired(Timer.HANGUP_AFTER_OPEN))[1] == []


def test_wrong_codes_lock_out_and_the_lockout_outlives_the_visit() -> None:
    state, commands = digits(answered(), "000011112222")
    assert len([c for c in of(cmd.Log, commands) if isinstance(c, cmd.Log) and c.event == "CODE_REJECTED"]) == 3
    assert any(isinstance(c, cmd.Log) and c.event == "LOCKOUT" for c in commands)
    assert state.lockout.locked(100.0)
    # A new visit with the same lockout: the right code is refused until the lockout ends.
    again = answered()
    again = replace(again, lockout=state.lockout)
    locked, commands = digits(again, "1234", at=200.0)
    assert cmd.PulseDoor() not in commands
    _, commands = digits(replace(again, lockout=locked.lockout), "1234", at=401.0)
    assert cmd.PulseDoor() in commands


def test_digits_from_a_losing_leg_or_before_answer_are_ignored() -> None:
    state, commands = run(new_visit(PARALLEL, TIMING), Start(True))
    _, commands = digits(state, "1234")
    assert cmd.PulseDoor() not in commands
    _, commands = digits(answered(), "1234", leg=1)
    assert cmd.PulseDoor() not in commands


def test_hash_ends_a_short_wrong_code_and_star_clears() -> None:
    state, commands = digits(answered(), "12#")
    assert state.lockout.wrong_in_a_row == 1
    state, commands = digits(state, "99*1234")
    assert cmd.PulseDoor() in commands


def test_deadline_tears_everything_down() -> None:
    state, commands = run(new_visit(PARALLEL, TIMING), Start(True), TimerFired(Timer.DEADLINE))
    assert {c for c in commands if isinstance(c, cmd.Hangup)} == {cmd.Hangup(0), cmd.Hangup(1)}
    assert finish(commands).outcome is Outcome.DEADLINE
    assert all(leg.status is not LegStatus.DIALING for leg in state.legs)


def test_second_press_restarts_the_prompt_only_when_configured() -> None:
    state, _ = run(new_visit(PARALLEL, TIMING), Start(True))
    assert cmd.PlayPrompt(Prompt.WAITING) not in step(state, SecondPress())[1]
    state = replace(state, timing=replace(TIMING, second_press="restart_prompt"))
    assert cmd.PlayPrompt(Prompt.WAITING) in step(state, SecondPress())[1]


def test_max_call_time_warns_then_ends() -> None:
    state = answered()
    _, warning = step(state, TimerFired(Timer.CALL_WARNING))
    # The resident hears it in the call and the visitor at the gate.
    assert cmd.PlayToCall(0, Prompt.CALL_ENDING) in warning and cmd.PlayPrompt(Prompt.CALL_ENDING) in warning
    _, commands = step(state, TimerFired(Timer.MAX_CALL))
    assert cmd.Hangup(0) in commands and finish(commands).outcome is Outcome.NOT_OPENED


def test_announce_mode_plays_to_the_resident_instead_of_connecting() -> None:
    state = answered(replace(PARALLEL, mode="announce"))
    _, commands = run(new_visit(replace(PARALLEL, mode="announce"), TIMING), Start(True), LegAnswered(0))
    assert cmd.PlayToCall(0, Prompt.ANNOUNCE) in commands and not of(cmd.ConnectAudio, commands)
    assert state.phase is Phase.CONNECTED


def test_inbound_allowlisted_caller_can_open_with_its_code() -> None:
    concierge = Apartment(name="inbound", buttons=(), residents=("sip:concierge@h",), codes=("9",))
    state, commands = step(inbound_visit(concierge, TIMING, Lockout()), Start(True))
    assert cmd.ConnectAudio(0) in commands
    _, commands = digits(state, "9")
    assert cmd.PulseDoor() in commands


def test_a_right_code_says_nothing_until_the_relay_answers() -> None:
    state, commands = run(answered(), *(Dtmf(0, d, "rfc2833", 1.0) for d in "1234"))
    assert commands[-1] == cmd.PulseDoor() and state.phase is Phase.OPENING
    assert not of(cmd.PlayPrompt, commands) and "DOOR_OPEN" not in logged(commands)
    opened, commands = step(state, DoorUnlocked())
    assert opened.door_opened and cmd.PlayPrompt(Prompt.DOOR_OPEN) in commands
    assert cmd.ShowLeds(LedPattern.DOOR_OPEN) in commands


def test_a_refused_open_is_heard_logged_and_its_own_outcome() -> None:
    state, _ = run(answered(), *(Dtmf(0, d, "rfc2833", 1.0) for d in "1234"))
    state, commands = step(state, DoorRefused("relay blocked by tamper"))
    assert [(c.event, c.text) for c in of(cmd.Log, commands)] == [
        ("DOOR_OPEN_REFUSED", "code accepted, relay refused: relay blocked by tamper")
    ]
    assert cmd.PlayPrompt(Prompt.DOOR_NOT_OPENED) in commands and cmd.PlayToCall(0, Prompt.DOOR_NOT_OPENED) in commands
    assert cmd.PlayPrompt(Prompt.DOOR_OPEN) not in commands and not state.door_opened
    # More digits do not pulse again, and the call ends as door_refused, with nothing more to say.
    state, commands = digits(state, "1234")
    assert cmd.PulseDoor() not in commands
    _, commands = step(state, TimerFired(Timer.HANGUP_AFTER_OPEN))
    done = finish(commands)
    assert (done.outcome, done.farewell, done.detail) == (Outcome.DOOR_REFUSED, None, "relay blocked by tamper")
    _, commands = step(state, LegEnded(0, 200, "BYE"))
    assert finish(commands).outcome is Outcome.DOOR_REFUSED


def test_typed_digits_belong_to_the_answered_call_only() -> None:
    # "47" on one call, then the call ends: nothing of it reaches the next call, whose "11" is its own.
    four_seven_one_one = replace(PARALLEL, codes=("4711",))
    first, _ = digits(answered(four_seven_one_one), "47")
    assert first.typed == "47"
    ended, _ = step(first, LegEnded(0, 200, "BYE"))
    assert ended.typed == ""
    second = replace(answered(four_seven_one_one), lockout=ended.lockout)
    second, commands = digits(second, "11")
    assert cmd.PulseDoor() not in commands and second.typed == "11"
    # ... and the whole right code on a fresh call opens, not rejected because of leftovers.
    third = replace(answered(four_seven_one_one), lockout=second.lockout)
    _, commands = digits(third, "4711")
    assert cmd.PulseDoor() in commands


def test_every_leg_failing_locally_is_dial_failed_never_nobody_answered() -> None:
    apt = replace(PARALLEL, fallback="")
    state, _ = run(new_visit(apt, TIMING), Start(True), LegEnded(0, 0, "too many calls", local=True))
    assert state.phase is Phase.RINGING  # the other leg still rings
    _, commands = step(state, LegEnded(1, 0, "too many calls", local=True))
    done = finish(commands)
    assert (done.outcome, done.farewell) == (Outcome.DIAL_FAILED, Prompt.OUT_OF_SERVICE)
    assert "sip:a@h: too many calls" in done.detail and "sip:b@h" in done.detail
    assert "DIAL_FAILED" in logged(commands)


def test_one_local_failure_beside_an_unanswered_leg_is_still_no_answer() -> None:
    apt = replace(PARALLEL, fallback="")
    state, _ = run(new_visit(apt, TIMING), Start(True), LegEnded(0, 0, "too many calls", local=True))
    _, commands = step(state, TimerFired(Timer.RING))
    assert finish(commands).outcome is Outcome.NO_ANSWER


def test_a_local_failure_moves_a_sequential_hunt_on_to_the_fallback() -> None:
    state, _ = run(new_visit(SEQUENTIAL, TIMING), Start(True), LegEnded(0, 0, "bad uri", local=True))
    state, commands = step(state, LegEnded(1, 0, "bad uri", local=True))
    assert cmd.Dial(2, "sip:concierge@h") in commands
    _, commands = step(state, LegEnded(2, 0, "bad uri", local=True))
    assert finish(commands).outcome is Outcome.DIAL_FAILED


def test_a_code_for_another_door_pulses_that_door_and_the_log_names_it() -> None:
    apt = replace(PARALLEL, door_codes={"garage": ("7391",)})
    state, commands = answered(apt), list[cmd.Command]()
    for d in "7391":
        state, commands = step(state, Dtmf(0, d, "rfc2833", 100.0))
    assert cmd.PulseDoor("garage") in commands and cmd.PulseDoor() not in commands
    state, commands = step(state, DoorUnlocked("garage"))
    assert state.door == "garage" and cmd.Log("DOOR_OPEN", "sip:a@h", "code accepted: garage") in commands
