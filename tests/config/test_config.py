"""Config: the embedded default parses; every problem is reported at once; warnings for what is risky."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from daemon.config import Config, default_config_text, load_config, parse_config
from daemon.errors import ConfigError
from tests.config.configs import account, with_lines


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


def test_checks_across_sections_run_even_when_a_section_has_its_own_problem() -> None:
    text = with_lines('inbound_codes = ["1590"]', 'inbound_codes = ["9"]')
    with pytest.raises(ConfigError) as info:
        parse_config(with_lines('codes = ["4711"]', 'codes = ["1"]', text))
    assert any(p.startswith("apartments[0]: codes[0]") for p in info.value.problems)
    assert any(p.startswith("inbound_codes[0]") for p in info.value.problems)


def _load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> tuple[Config, list[str]]:
    path = tmp_path / "intercom.toml"
    path.write_text(text)
    return load_config(path, environ=environ or {})


def test_password_file_readable_by_others_is_warned_about(tmp_path: Path) -> None:
    secret = tmp_path / "sip-password"
    secret.write_text("hunter2\n")
    os.chmod(secret, 0o644)
    text = account(f'username = "panel"\npassword_file = "{secret}"')
    config, warnings = _load(tmp_path, text)
    assert config.sip.account.password == "hunter2"
    assert any("readable by group/others" in w for w in warnings)
    os.chmod(secret, stat.S_IRUSR | stat.S_IWUSR)
    assert _load(tmp_path, text)[1] == []
    config, _ = _load(tmp_path, text, {"INTERCOM_SIP_PASSWORD": "from-env"})
    assert config.sip.account.password == "from-env"


def test_a_password_in_the_environment_without_username_is_warned_about(tmp_path: Path) -> None:
    _, warnings = _load(tmp_path, default_config_text(), {"INTERCOM_SIP_PASSWORD": "x"})
    assert any("INTERCOM_SIP_PASSWORD is set but sip.account.username is not" in w for w in warnings), warnings


def test_allowlist_without_inbound_sources_is_warned_about(tmp_path: Path) -> None:
    """inbound_allow alone trusts the From header, which any caller writes as it likes."""
    config, warnings = _load(
        tmp_path, with_lines('inbound_sources = ["127.0.0.1"]', '# inbound_sources = ["127.0.0.1"]')
    )
    assert config.sip.inbound_sources == ()
    assert any("sip.inbound_allow matches the caller's From header" in w for w in warnings), warnings
    assert _load(tmp_path, default_config_text())[1] == []


@pytest.mark.parametrize(
    ("network", "warned"),
    [("0.0.0.0/0", True), ("10.0.0.0/7", True), ("10.0.0.0/8", False), ("192.168.1.0/24", False)],
)
def test_an_inbound_source_wider_than_a_slash_8_is_warned_about(tmp_path: Path, network: str, warned: bool) -> None:
    text = with_lines('inbound_sources = ["127.0.0.1"]', f'inbound_sources = ["127.0.0.1", "{network}"]')
    _, warnings = _load(tmp_path, text)
    assert any(f"sip.inbound_sources[1]: {network!r} is" in w for w in warnings) is warned, warnings


def test_mock_pins_under_systemd_are_warned_about(tmp_path: Path) -> None:
    _, warnings = _load(tmp_path, default_config_text(), {"INVOCATION_ID": "0123abcd"})
    assert any("gpio.pin_factory = 'mock' under systemd: the pins are SIMULATED" in w for w in warnings), warnings
    assert _load(tmp_path, default_config_text())[1] == []


def test_inbound_codes_nobody_may_type_are_warned_about(tmp_path: Path) -> None:
    text = with_lines('inbound_allow = ["sip:concierge@127.0.0.1"]', "inbound_allow = []")
    _, warnings = _load(tmp_path, text)
    assert any("inbound_codes are set but sip.inbound_allow is empty" in w for w in warnings), warnings
