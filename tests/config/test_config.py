"""Config: the embedded default parses; broken configs are refused with every problem named."""

from __future__ import annotations

import pytest

from daemon.config import default_config_text, parse_config
from daemon.errors import ConfigError


def test_default_config_parses_into_a_simulated_panel() -> None:
    config = parse_config(default_config_text())
    assert config.gpio.pin_factory == "mock"
    assert config.apartment_for_button("101") is not None
    assert config.apartment_for_button("101").residents == ("sip:101@127.0.0.1:5080",)  # type: ignore[union-attr]


def test_every_problem_is_reported_at_once() -> None:
    text = """
[relay]
pin = 27
colour = "red"
[timing]
wrong_code_limit = true
[[buttons]]
name = "a"
pin = 17
[[apartments]]
name = "a"
buttons = ["a"]
residents = ["http://x"]
codes = ["12a"]
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "intercom.toml")
    problems = info.value.problems
    assert any(p.startswith("relay.colour: unknown key") for p in problems)
    assert any(p.startswith("timing.wrong_code_limit: expected a whole number") for p in problems)
    assert any("residents[0]" in p and "not a SIP URI" in p for p in problems)
    assert any("codes[0]" in p and "digits" in p for p in problems)
    assert str(info.value).startswith("intercom.toml: 4 configuration problem(s)")
