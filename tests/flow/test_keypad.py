"""The keypad's typing machine, with plain numbers for time."""

from __future__ import annotations

from daemon.flow.keypad import (
    CALL,
    CallApartment,
    CheckPin,
    Entry,
    Feedback,
    KeypadAction,
    KeypadLimits,
    KeypadState,
    Tone,
    expire,
    press,
)

LIMITS = KeypadLimits(max_number_digits=4, max_pin_digits=6, idle_timeout=8.0)


def type_keys(
    keys: str, state: KeypadState | None = None, *, t0: float = 0.0, gap: float = 0.5, limits: KeypadLimits = LIMITS
) -> tuple[KeypadState, list[KeypadAction]]:
    state, out = state or KeypadState(), []
    for i, key in enumerate(keys):
        state, actions = press(state, key, t0 + i * gap, limits)
        out += actions
    return state, out


def requests(actions: list[KeypadAction]) -> list[KeypadAction]:
    return [a for a in actions if not isinstance(a, Feedback)]


def test_number_then_call_or_hash_calls_the_apartment() -> None:
    for submit in (CALL, "#"):
        state, actions = type_keys("101" + submit)
        assert requests(actions) == [CallApartment("101")]
        assert state == KeypadState()
        assert all(a == Feedback(Tone.CLICK) for a in actions if isinstance(a, Feedback))
        assert len([a for a in actions if isinstance(a, Feedback)]) == 4  # every key is heard


def test_star_erases_everything_typed() -> None:
    _, actions = type_keys("19*101#")
    assert requests(actions) == [CallApartment("101")]


def test_hash_first_starts_a_pin_that_is_never_submitted_by_time() -> None:
    state, actions = type_keys("#4821#")
    assert requests(actions) == [CheckPin("4821")]
    state, _ = type_keys("#48")
    assert state.entry is Entry.PIN
    state, actions = expire(state, 100.0, KeypadLimits(call_after_idle=2.0))
    assert requests(actions) == [] and state == KeypadState()
    assert actions == [Feedback(Tone.ERROR, "entry timed out")]


def test_limits_and_refusals_clear_the_entry_with_an_error_tone() -> None:
    _, actions = type_keys("12345")  # 4 digits at most
    assert actions[-1] == Feedback(Tone.ERROR, "too many digits")
    state, actions = type_keys(CALL)
    assert actions == [Feedback(Tone.ERROR, "call with no number")] and state == KeypadState()
    _, actions = type_keys("##")
    assert actions[-1] == Feedback(Tone.ERROR, "empty PIN")
    state, actions = press(KeypadState(), "X", 0.0, LIMITS)
    assert actions == [Feedback(Tone.ERROR, "unknown key")]


def test_idle_timeout_clears_and_optional_call_after_idle_calls() -> None:
    state, _ = type_keys("10")
    assert state.deadline(LIMITS) == 0.5 + 8.0
    assert expire(state, 8.4, LIMITS) == (state, [])
    cleared, actions = expire(state, 8.5, LIMITS)
    assert cleared == KeypadState() and requests(actions) == []
    auto = KeypadLimits(idle_timeout=8.0, call_after_idle=3.0)
    assert state.deadline(auto) == 3.5
    assert requests(expire(state, 3.5, auto)[1]) == [CallApartment("10")]


def test_a_key_after_the_deadline_first_applies_what_the_deadline_meant() -> None:
    auto = KeypadLimits(idle_timeout=8.0, call_after_idle=3.0)
    state, _ = type_keys("10", limits=auto)
    state, actions = press(state, "2", 10.0, auto)  # the timer had not fired yet
    assert requests(actions) == [CallApartment("10")]
    assert state.typed == "2"  # the new key starts a new entry


def test_the_state_never_shows_digits_in_its_repr() -> None:
    state, _ = type_keys("#4821")
    assert "4821" not in repr(state) and "4" not in repr(state).replace("4 digit", "")
