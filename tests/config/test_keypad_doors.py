"""[keypad], keypad numbers and [[doors]] with per-door codes: parsed, and every mistake named by its key."""

from __future__ import annotations

import io
from datetime import date, datetime
from pathlib import Path

import pytest

from daemon.access import hash_pin
from daemon.config import default_config_text, parse_config
from daemon.errors import ConfigError
from daemon.hash_pin import run_hash_pin

BASE = default_config_text().replace('[[apartments]]\nname = "101"', '[[apartments]]\nname = "101"\nnumber = "101"')
KEYPAD = """
[keypad]
rows = [12, 16, 20, 21]
columns = [13, 19, 26]
"""
# The default config's [relay], [exit_button] and [door_contact], as two doors instead.
DOORS = """
[[doors]]
name = "social"
relay = { pin = 27 }
exit_button = { pin = 22 }
door_contact = { pin = 23 }

[[doors]]
name = "garage"
relay = { pin = 25, active_high = false, pulse_seconds = 5 }
"""


def without_single_door(text: str) -> str:
    for section in ("[relay]", "[exit_button]", "[door_contact]"):
        start = text.index(section)
        text = text[:start] + text[text.index("\n\n", start) + 2 :]
    return text


def problems(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "intercom.toml")
    return str(info.value)


def test_a_keypad_and_numbered_apartments_parse_and_a_number_is_found_in_one_lookup() -> None:
    config = parse_config(BASE + KEYPAD + "idle_timeout_seconds = 6\ncall_after_idle_seconds = 2\n")
    assert config.keypad is not None and config.keypad.matrix is not None
    assert config.keypad.limits.idle_timeout == 6 and config.keypad.limits.call_after_idle == 2
    assert config.apartment_for_number("101") is config.apartments[0]
    assert config.apartment_for_number("102") is None
    assert config.panel.keypad == config.keypad


def test_keypad_mistakes_are_named() -> None:
    text = problems(
        BASE.replace('number = "101"', 'number = "1a1"')
        + KEYPAD.replace("[13, 19, 26]", "[13, 19, 17]")
        + 'keys = { "1" = 2 }\ncall_after_idle_seconds = 9\n'
    )
    assert "keypad.columns[2]: GPIO 17 is already used by buttons[0].pin" in text
    assert "keypad: rows/columns and keys: choose one wiring" in text
    assert "keypad: call_after_idle_seconds: must be less than idle_timeout_seconds" in text
    assert "apartments[0]: number: '1a1' is not 1 to 8 digits" in text


def test_two_apartments_with_one_number_and_a_number_longer_than_the_keypad_takes() -> None:
    text = BASE.replace('name = "Portaria"', 'name = "Portaria"\nnumber = "101"') + KEYPAD + "max_number_digits = 2\n"
    found = problems(text)
    assert "apartments[1].number: '101' is already apartments[0]'s" in found
    assert "keypad.max_number_digits: 2, but an apartment's number has 3 digits" in found


def test_doors_with_their_own_relays_and_codes_per_door() -> None:
    text = without_single_door(BASE).replace('codes = ["4711"]', 'codes = ["4711"]\ndoor_codes = { garage = ["7391"] }')
    config = parse_config('inbound_door_codes = { garage = ["8642"] }\n' + text + DOORS)
    assert config.door_names == ("social", "garage")
    assert [d.relay.pin for d in config.panel.door_list] == [27, 25]
    apt = config.apartments[0]
    assert apt.door_for("4711") == "" and apt.door_for("7391") == "garage" and apt.door_for("1111") is None
    assert config.inbound_door_codes == {"garage": ("8642",)}


def test_without_doors_the_single_relay_is_the_door_named_main() -> None:
    config = parse_config(BASE)
    (door,) = config.panel.door_list
    assert (door.name, door.relay, door.exit_button) == ("main", config.relay, config.exit_button)
    assert config.door_names == ("main",)


def test_door_mistakes_are_named_and_never_quote_a_code() -> None:
    text = BASE.replace('codes = ["4711"]', 'codes = ["4711"]\ndoor_codes = { cellar = ["9317"], social = ["47115"] }')
    text = text.replace('engine = "espeak-ng"', 'engine = "espeak-ng"\ndoors = { cellar = "Adega aberta." }')
    found = problems(text + DOORS.replace("pin = 25", "pin = 17"))
    assert "doors: with [[doors]], give each door its own relay" in found
    assert "doors[1].relay.pin: GPIO 17 is already used by buttons[0].pin" in found
    assert "apartments[0].door_codes.cellar: no door named 'cellar'; doors: social, garage" in found
    assert "apartments[0].door_codes.social: the first door's codes go in the plain codes list" in found
    assert "prompts.doors.cellar: no door named 'cellar'" in found
    # A code for one door may not be the start of another door's: digits are matched as they come.
    assert "apartments[0]: codes[0]: a prefix of codes[2]" in found
    assert "9317" not in found and "47115" not in found


SALT = "c2FsdHNhbHRzYWx0c2FsdA=="  # 16 bytes


def test_pins_parse_into_a_book_with_windows() -> None:
    pin_hash = hash_pin("60537", SALT)
    text = (
        BASE
        + KEYPAD
        + f'\n[access]\nsalt = "{SALT}"\nwrong_limit = 4\n\n[[pins]]\nlabel = "cleaner"\npin_hash = "{pin_hash}"\n'
        + 'doors = ["main"]\nwindows = [{ days = ["mon", "fri"], hours = "08:00-17:00", valid_until = "2030-12-31" }]\n'
    )
    config = parse_config(text)
    found = config.pin_book.lookup("60537")
    assert found is not None and found.label == "cleaner" and found.doors == ("main",)
    assert config.access.policy.wrong_limit == 4
    (window,) = found.windows
    assert window.weekdays == frozenset({0, 4}) and window.valid_until == date(2030, 12, 31)
    assert found.valid_at(datetime(2026, 11, 27, 9, 0)) and not found.valid_at(datetime(2026, 11, 27, 17, 0))


def test_pin_mistakes_are_named_and_never_quote_a_hash() -> None:
    pin_hash = hash_pin("60537", SALT)
    pins = "".join(
        f'\n[[pins]]\nlabel = "x"\npin_hash = "{h}"\ndoors = ["{d}"]\nwindows = [{{ hours = "{w}" }}]\n'
        for h, d, w in ((pin_hash, "main", "08:00-17:00"), (pin_hash, "cellar", "17:00-08:00"), ("60537", "main", ""))
    )
    found = problems(BASE + pins)
    assert "access.salt: required with [[pins]]" in found
    assert "pins: access PINs need a [keypad]" in found
    assert "pins: the label 'x' is used twice" in found
    assert "pins[1]: the same PIN as pins[0]" in found
    assert "pins[1].doors: no door named 'cellar'" in found
    assert "pins[1].windows[0]: hours: '17:00-08:00' is not 'HH:MM-HH:MM'" in found
    assert "pins[2]: pin_hash: not a PIN hash" in found
    assert pin_hash not in found and "60537" not in found


def test_hash_pin_prints_the_line_to_paste_and_a_new_salt_when_the_config_has_none(tmp_path: Path) -> None:
    config = tmp_path / "intercom.toml"
    config.write_text(f'[access]\nsalt = "{SALT}"\n')
    out, err = io.StringIO(), io.StringIO()
    assert run_hash_pin(config, None, stdin=io.StringIO("60537\n"), stdout=out, stderr=err) == 0
    assert out.getvalue() == f'pin_hash = "{hash_pin("60537", SALT)}"\n' and "60537" not in err.getvalue()
    out = io.StringIO()
    assert run_hash_pin(tmp_path / "none.toml", None, stdin=io.StringIO("60537\n"), stdout=out, stderr=err) == 0
    salt_line, hash_line = out.getvalue().splitlines()
    salt = salt_line.removeprefix('salt = "').removesuffix('"')
    assert hash_line == f'pin_hash = "{hash_pin("60537", salt)}"'
    assert run_hash_pin(config, None, stdin=io.StringIO("12a4\n"), stdout=out, stderr=err) != 0
