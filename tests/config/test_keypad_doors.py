"""[keypad], keypad numbers and [[doors]] with per-door codes: parsed, and every mistake named by its key."""

from __future__ import annotations

import pytest

from daemon.config import default_config_text, parse_config
from daemon.errors import ConfigError

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
    found = problems(text + DOORS.replace("pin = 25", "pin = 17"))
    assert "doors: with [[doors]], give each door its own relay" in found
    assert "doors[1].relay.pin: GPIO 17 is already used by buttons[0].pin" in found
    assert "apartments[0].door_codes.cellar: no door named 'cellar'; doors: social, garage" in found
    assert "apartments[0].door_codes.social: the first door's codes go in the plain codes list" in found
    # A code for one door may not be the start of another door's: digits are matched as they come.
    assert "apartments[0]: codes[0]: a prefix of codes[2]" in found
    assert "9317" not in found and "47115" not in found
