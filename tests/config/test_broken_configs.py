"""At least 30 broken configurations, each refused with a message naming the key; none starts half-way."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.config import default_config_text, load_config, parse_config
from daemon.errors import ConfigError

BASE = default_config_text()


def with_lines(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


# (case id, config text, a string the problem report must contain: the key it names)
BROKEN: list[tuple[str, str, str]] = [
    ("toml-syntax", BASE + "\n[relay\n", "TOML syntax error"),
    ("unknown-top-key", BASE + "\ncolour = 'red'\n", "colour: unknown key"),
    ("unknown-section-key", with_lines("pulse_seconds = 3.0", "pulse_seconds = 3.0\nlength = 2"), "relay.length"),
    ("relay-pin-string", with_lines("pin = 27", "pin = 'GPIO27'"), "relay.pin: expected a whole number"),
    ("relay-pin-out-of-range", with_lines("pin = 27", "pin = 40"), "relay.pin: GPIO 40"),
    ("relay-pin-negative", with_lines("pin = 27", "pin = -1"), "relay.pin: GPIO -1"),
    ("pin-used-twice", with_lines("pin = 27", "pin = 17"), "already used by buttons[0].pin"),
    ("led-pin-clash", with_lines("pin = 6", "pin = 5"), "leds.fault.pin: GPIO 5 is already used"),
    ("unknown-led", BASE + "\n[leds.blue]\npin = 12\n", "leds.blue: unknown LED"),
    ("pulse-negative", with_lines("pulse_seconds = 3.0", "pulse_seconds = -1"), "pulse_seconds: must be more"),
    ("pulse-zero", with_lines("pulse_seconds = 3.0", "pulse_seconds = 0"), "pulse_seconds: must be more"),
    ("active-high-string", with_lines("active_high = true", "active_high = 'yes'"), "relay.active_high"),
    (
        "ring-timeout-negative",
        with_lines("ring_timeout_seconds = 30", "ring_timeout_seconds = -5"),
        "ring_timeout_seconds",
    ),
    (
        "warning-longer-than-call",
        with_lines("call_warning_seconds = 10", "call_warning_seconds = 500"),
        "call_warning_seconds: must be less than max_call_seconds",
    ),
    ("wrong-code-limit-zero", with_lines("wrong_code_limit = 3", "wrong_code_limit = 0"), "wrong_code_limit"),
    (
        "second-press-bad",
        with_lines('second_press = "ignore"', 'second_press = "ring_again"'),
        "timing.second_press: 'ring_again' is not accepted; accepted: 'ignore', 'restart_prompt'",
    ),
    ("code-not-digits", with_lines('codes = ["1"]\nstrategy', 'codes = ["12a4"]\nstrategy'), "codes[0]"),
    ("code-too-long", with_lines('codes = ["1"]\nstrategy', 'codes = ["1234567890123"]\nstrategy'), "codes[0]"),
    (
        "code-is-number",
        with_lines('codes = ["1"]\nstrategy', "codes = [1234]\nstrategy"),
        "apartments[0].codes[0]: expected a string",
    ),
    (
        "resident-bad-uri",
        with_lines('residents = ["sip:101@127.0.0.1:5080"]', 'residents = ["101@host"]'),
        "residents[0]: '101@host' is not a SIP URI",
    ),
    (
        "resident-http-uri",
        with_lines('residents = ["sip:101@127.0.0.1:5080"]', 'residents = ["http://x"]'),
        "residents[0]",
    ),
    ("no-residents", with_lines('residents = ["sip:101@127.0.0.1:5080"]', "residents = []"), "residents: at least"),
    ("fallback-bad-uri", with_lines('fallback = ""', 'fallback = "concierge"'), "fallback: 'concierge'"),
    ("strategy-bad", with_lines('strategy = "parallel"', 'strategy = "random"'), "apartments[0].strategy"),
    ("mode-bad", with_lines('mode = "talk"', 'mode = "video"'), "apartments[0].mode"),
    ("button-unknown", with_lines('buttons = ["101"]', 'buttons = ["102"]'), "no button named '102'"),
    ("button-twice", with_lines('buttons = ["concierge"]', 'buttons = ["101"]'), "already rings apartment"),
    (
        "duplicate-button-name",
        with_lines('name = "concierge"\npin = 18', 'name = "101"\npin = 18'),
        "buttons: the name '101' is used twice",
    ),
    ("duplicate-apartment", with_lines('name = "Portaria"', 'name = "101"'), "apartments: the name '101'"),
    (
        "button-missing-pin",
        with_lines('name = "concierge"\npin = 18', 'name = "concierge"'),
        "buttons[1].pin: required key is missing",
    ),
    ("transport-bad", with_lines('transport = "udp"', 'transport = "sctp"'), "sip.transport"),
    ("port-out-of-range", with_lines("port = 5070", "port = 70000"), "port: 70000 out of range"),
    ("rtp-in-ephemeral-range", with_lines("rtp_port = 20000", "rtp_port = 40000"), "rtp_port: 40000"),
    (
        "allow-bad-uri",
        with_lines('inbound_allow = ["sip:concierge@127.0.0.1"]', 'inbound_allow = ["concierge"]'),
        "inbound_allow[0]",
    ),
    (
        "inbound-source-not-an-address",
        with_lines('inbound_sources = ["127.0.0.1"]', 'inbound_sources = ["pbx.local"]'),
        "inbound_sources[0]: 'pbx.local' is not an IP address or network",
    ),
    (
        "inbound-source-bad-prefix",
        with_lines('inbound_sources = ["127.0.0.1"]', 'inbound_sources = ["10.0.0.0/33"]'),
        "inbound_sources[0]",
    ),
    (
        "refuse-status-2xx",
        with_lines("inbound_refuse_status = 603", "inbound_refuse_status = 200"),
        "inbound_refuse_status",
    ),
    (
        "max-calls-beyond-the-ioqueue",
        with_lines("inbound_refuse_status = 603", "inbound_refuse_status = 603\nmax_calls = 16"),
        "max_calls: 16 out of range 1..12",
    ),
    ("account-uri-bad", with_lines('uri = "sip:portao@127.0.0.1"', 'uri = "portao"'), "sip.account: uri"),
    ("registrar-bad", with_lines('registrar = ""', 'registrar = "pbx.local"'), "registrar: 'pbx.local'"),
    ("tls-without-ca", with_lines('transport = "udp"', 'transport = "tls"'), "tls_ca_file: required"),
    (
        "srtp-mandatory-over-udp",
        with_lines('transport = "udp"', 'transport = "udp"\nsrtp = "mandatory"'),
        "srtp: 'mandatory' needs transport = 'tls'",
    ),
    ("volume-out-of-range", with_lines("volume = 1.0", "volume = 5"), "audio: volume"),
    ("language-bad", with_lines('language = "pt-BR"', 'language = "fr"'), "prompts.language"),
    ("prompt-unknown", BASE + '\n[prompts.text]\ngreeting = "Oi"\n', "text.greeting: unknown prompt"),
    (
        "prompt-wav-missing",
        BASE + '\n[prompts.files]\nwaiting = "/nonexistent/wait.wav"\n',
        "files.waiting: WAV file '/nonexistent/wait.wav' does not exist",
    ),
    ("piper-without-model", with_lines('engine = "espeak-ng"', 'engine = "piper"'), "piper_model: required"),
    ("pin-factory-bad", with_lines('pin_factory = "mock"', 'pin_factory = "wiringpi"'), "gpio.pin_factory"),
    (
        "apartments-missing",
        BASE.split("[[apartments]]")[0] + BASE.split("[paths]")[1].join(["[paths]", ""]),
        "apartments: at least one apartment is required",
    ),
]


def test_there_are_at_least_thirty_cases() -> None:
    assert len(BROKEN) >= 30


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in BROKEN])
def test_broken_config_is_refused_naming_the_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "/etc/intercom/intercom.toml")
    message = str(info.value)
    assert message.startswith("/etc/intercom/intercom.toml: ")
    assert expected in message, message


def test_check_config_exits_78_with_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "intercom.toml"
    path.write_text(with_lines("pulse_seconds = 3.0", "pulse_seconds = -1").replace("port = 5070", "port = -3"))
    done = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "--config", str(path), "check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 78
    assert "2 configuration problem(s)" in done.stderr
    assert "relay: pulse_seconds" in done.stderr and "sip: port: -3" in done.stderr


def test_password_file_readable_by_others_is_warned_about(tmp_path: Path) -> None:
    secret = tmp_path / "sip-password"
    secret.write_text("hunter2\n")
    os.chmod(secret, 0o644)
    path = tmp_path / "intercom.toml"
    path.write_text(with_lines('registrar = ""', f'registrar = ""\npassword_file = "{secret}"'))
    config, warnings = load_config(path, environ={})
    assert config.sip.account.password == "hunter2"
    assert any("readable by group/others" in w for w in warnings)
    os.chmod(secret, stat.S_IRUSR | stat.S_IWUSR)
    assert load_config(path, environ={})[1] == []
    config, _ = load_config(path, environ={"INTERCOM_SIP_PASSWORD": "from-env"})
    assert config.sip.account.password == "from-env"


def test_print_default_config_is_the_shipped_example() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "--print-default-config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert parse_config(done.stdout) == parse_config(BASE)


def test_allowlist_without_inbound_sources_is_warned_about(tmp_path: Path) -> None:
    """inbound_allow alone trusts the From header, which any caller writes as it likes."""
    path = tmp_path / "intercom.toml"
    path.write_text(with_lines('inbound_sources = ["127.0.0.1"]', '# inbound_sources = ["127.0.0.1"]'))
    config, warnings = load_config(path, environ={})
    assert config.sip.inbound_sources == ()
    assert any("sip.inbound_allow matches the caller's From header" in w for w in warnings), warnings
    path.write_text(default_config_text())
    assert load_config(path, environ={})[1] == []
