"""Broken configurations, each refused with a message naming the key; none starts half-way.

Three tables: what is wrong inside the TOML (``parse_config``), what is wrong with the file itself
(``load_config``), and what this host cannot run (``host_problems``, run by both ``check-config`` and ``run``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.config import host_problems, load_config, parse_config
from daemon.errors import ConfigError
from tests.config.configs import (
    APT0_CODES,
    APT1_CODES,
    BASE,
    RESIDENT,
    account,
    hermetic,
    resident,
    sip,
    timing,
    with_lines,
    write,
)


def _file_where_the_socket_goes(d: Path) -> str:
    (d / "runtime_dir").mkdir()
    write(d / "runtime_dir" / "control.sock", "")
    return hermetic(d)


# (case id, config text, a string the problem report must contain: the key it names and what is wrong)
BROKEN: list[tuple[str, str, str]] = [
    # --- the file's shape
    ("toml-syntax", BASE + "\n[relay\n", "TOML syntax error"),
    ("toml-a-list", "[1, 2]\n", "TOML syntax error"),
    ("empty", "", "the file is empty"),
    ("deeply-nested", BASE + "x = " + "[" * 5000 + "]" * 5000 + "\n", "TOML nested too deeply"),
    ("comments-only", "# nothing yet\n", "apartments: at least one apartment is required"),
    ("unknown-top-key", BASE + "\ncolour = 'red'\n", "colour: unknown key"),
    ("unknown-section-key", with_lines("pulse_seconds = 3.0", "pulse_seconds = 3.0\nlength = 2"), "relay.length"),
    ("section-is-a-number", "relay = 5\n" + BASE.replace("[relay]", "[unused]", 1), "relay: expected a table"),
    ("control-char", with_lines('panel_name = "Portão principal"', 'panel_name = "a\\u0000b"'), "panel_name: contains"),
    ("c1-control", with_lines('panel_name = "Portão principal"', 'panel_name = "a\\u009bb"'), "panel_name: contains"),
    ("bidi-override", with_lines('panel_name = "Portão principal"', 'panel_name = "\\u202e101"'), "at position 0"),
    ("bidi-isolate", with_lines('panel_name = "Portão principal"', 'panel_name = "1\\u2066"'), "panel_name: contains"),
    (
        "line-separator",
        with_lines('panel_name = "Portão principal"', 'panel_name = "a\\u2028b"'),
        "panel_name: contains",
    ),
    # --- numbers: finite, in range, the right kind (tests/config/test_ranges.py walks every one)
    ("relay-pin-string", with_lines("pin = 27", "pin = 'GPIO27'"), "relay.pin: expected a whole number"),
    ("relay-pin-out-of-range", with_lines("pin = 27", "pin = 40"), "relay.pin: 40 out of range 0..27"),
    ("relay-pin-negative", with_lines("pin = 27", "pin = -1"), "relay.pin: -1 out of range"),
    ("pulse-negative", with_lines("pulse_seconds = 3.0", "pulse_seconds = -1"), "relay.pulse_seconds: -1 out of"),
    ("pulse-zero", with_lines("pulse_seconds = 3.0", "pulse_seconds = 0"), "relay.pulse_seconds: 0 out of range"),
    ("pulse-inf", with_lines("pulse_seconds = 3.0", "pulse_seconds = inf"), "relay.pulse_seconds: inf is not a"),
    ("pulse-nan", with_lines("pulse_seconds = 3.0", "pulse_seconds = nan"), "relay.pulse_seconds: nan is not a"),
    ("pulse-a-day", with_lines("pulse_seconds = 3.0", "pulse_seconds = 86400"), "pulse_seconds: 86400 out of range"),
    ("pulse-1e9", with_lines("pulse_seconds = 3.0", "pulse_seconds = 1e9"), "relay.pulse_seconds: 1e+09 out of"),
    (
        "pulse-400-digit-integer",
        with_lines("pulse_seconds = 3.0", "pulse_seconds = 1" + "0" * 400),
        "relay.pulse_seconds: a huge number out of range",
    ),
    ("ring-inf", with_lines("ring_timeout_seconds = 30", "ring_timeout_seconds = inf"), "ring_timeout_seconds: inf"),
    ("ring-negative", with_lines("ring_timeout_seconds = 30", "ring_timeout_seconds = -5"), "ring_timeout_seconds"),
    ("deadline-inf", with_lines("visit_deadline_seconds = 300", "visit_deadline_seconds = +inf"), "deadline_seconds"),
    ("lockout-inf", with_lines("lockout_seconds = 300", "lockout_seconds = inf"), "timing.lockout_seconds: inf"),
    ("lockout-minus-inf", with_lines("lockout_seconds = 300", "lockout_seconds = -inf"), "lockout_seconds: -inf"),
    ("hangup-negative", with_lines("hangup_after_open_seconds = 3", "hangup_after_open_seconds = -1"), "hangup_after"),
    ("held-open-nan", with_lines("held_open_seconds = 60", "held_open_seconds = nan"), "held_open_seconds: nan"),
    ("tamper-block-1e9", with_lines("block_seconds = 0", "block_seconds = 1e9"), "tamper.block_seconds: 1e+09"),
    ("media-timeout-inf", sip("media_timeout_seconds = inf"), "sip.media_timeout_seconds: inf"),
    ("volume-out-of-range", with_lines("volume = 1.0", "volume = 5"), "audio.volume: 5 out of range 0..2"),
    ("volume-nan", with_lines("volume = 1.0", "volume = nan"), "audio.volume: nan"),
    ("frames-per-buffer-huge", with_lines("volume = 1.0", "frames_per_buffer = 99999"), "audio.frames_per_buffer"),
    ("wrong-code-limit-zero", with_lines("wrong_code_limit = 3", "wrong_code_limit = 0"), "wrong_code_limit: 0"),
    ("wrong-code-limit-float", with_lines("wrong_code_limit = 3", "wrong_code_limit = 1e9"), "wrong_code_limit: expe"),
    ("register-expiry-huge", account("register_expiry = 999999999"), "register_expiry: 999999999 out of range"),
    ("active-high-string", with_lines("active_high = true", "active_high = 'yes'"), "relay.active_high"),
    # --- pins
    ("pin-used-twice", with_lines("pin = 27", "pin = 17"), "already used by buttons[0].pin"),
    ("led-pin-clash", with_lines("pin = 6", "pin = 5"), "leds.fault.pin: GPIO 5 is already used"),
    ("unknown-led", BASE + "\n[leds.blue]\npin = 12\n", "leds.blue: unknown LED"),
    ("pin-factory-bad", with_lines('pin_factory = "mock"', 'pin_factory = "wiringpi"'), "gpio.pin_factory"),
    # --- timing
    (
        "warning-longer-than-call",
        with_lines("call_warning_seconds = 10", "call_warning_seconds = 500"),
        "call_warning_seconds: must be less than max_call_seconds",
    ),
    (
        "second-press-bad",
        with_lines('second_press = "ignore"', 'second_press = "ring_again"'),
        "timing.second_press: 'ring_again' is not accepted; accepted: 'ignore', 'restart_prompt'",
    ),
    (
        "deadline-shorter-than-ring",
        with_lines("visit_deadline_seconds = 300", "visit_deadline_seconds = 30"),
        "timing.visit_deadline_seconds: 30 s ends a visit to apartments[0] ('101') before its 1 ring stage(s)",
    ),
    (
        "deadline-shorter-than-sequential-ring",
        with_lines(
            'strategy = "parallel"\nfallback = ""',
            'strategy = "sequential"\nfallback = "sip:concierge@127.0.0.1:5080"',
            with_lines(RESIDENT, 'residents = ["sip:a@127.0.0.1:5080", "sip:b@127.0.0.1:5080"]', timing("")),
        ).replace("visit_deadline_seconds = 300", "visit_deadline_seconds = 60"),
        "before its 3 ring stage(s) of ring_timeout_seconds 30 s (90 s) are over",
    ),
    # --- door codes
    ("code-not-digits", with_lines(APT0_CODES, 'codes = ["12a4"]'), "apartments[0]: codes[0]: a door code is 4 to 12"),
    ("code-too-long", with_lines(APT0_CODES, 'codes = ["1234567890123"]'), "codes[0]: a door code is 4 to 12"),
    ("code-one-digit", with_lines(APT0_CODES, 'codes = ["1"]'), "apartments[0]: codes[0]: a door code is 4 to 12"),
    ("code-three-digits", with_lines(APT1_CODES, 'codes = ["258"]'), "apartments[1]: codes[0]: a door code is"),
    ("code-one-digit-repeated", with_lines(APT0_CODES, 'codes = ["0000"]'), "codes[0]: one digit repeated"),
    ("code-a-run", with_lines(APT0_CODES, 'codes = ["4711", "98765"]'), "codes[1]: one digit repeated or a run"),
    (
        "code-prefix",
        with_lines(APT0_CODES, 'codes = ["47115", "4711"]'),
        "apartments[0]: codes[1]: a prefix of codes[0]",
    ),
    ("code-twice", with_lines(APT0_CODES, 'codes = ["4711", "4711"]'), "codes[1]: the same code as codes[0]"),
    (
        "code-is-number",
        with_lines(APT0_CODES, "codes = [4711]"),
        "apartments[0].codes[0]: expected a string, got a value of type int",
    ),
    ("inbound-code-one-digit", with_lines('inbound_codes = ["1590"]', 'inbound_codes = ["9"]'), "inbound_codes[0]: a"),
    (
        "inbound-code-prefix",
        with_lines('inbound_codes = ["1590"]', 'inbound_codes = ["1590", "159073"]'),
        "inbound_codes[0]: a prefix of inbound_codes[1]",
    ),
    # --- apartments and buttons
    ("resident-bad-uri", resident("101@host"), "residents[0]: '101@host' is not a SIP URI"),
    ("resident-http-uri", resident("http://x"), "residents[0]: 'http://x' is not a SIP URI"),
    ("resident-port-99999", resident("sip:101@host:99999"), "residents[0]: 'sip:101@host:99999' is not a SIP URI"),
    ("resident-port-zero", resident("sip:101@host:0"), "port '0' is not a port number 1..65535"),
    ("resident-colons", resident("sip:::::"), "residents[0]: 'sip:::::' is not a SIP URI: has no host"),
    ("resident-ipv6", resident("sip:101@[::1]:5080"), "IPv6 addresses are not supported"),
    ("resident-bad-ipv4", resident("sip:101@300.1.1.1"), "host '300.1.1.1' is not an IPv4 address"),
    ("resident-bad-host", resident("sip:101@bad_host"), "host 'bad_host' is not a host name"),
    ("resident-space", resident("sip:1 01@host"), "residents[0]: 'sip:1 01@host' is not a SIP URI"),
    ("resident-password", resident("sip:101:pw@host"), "has a password in it"),
    ("resident-headers", resident("sip:101@host?subject=x"), "URI headers (?...) are not supported"),
    ("resident-unknown-transport", resident("sip:101@host;transport=pigeon"), "transport 'pigeon' is not one of"),
    (
        "resident-tcp-on-udp-panel",
        resident("sip:101@127.0.0.1:5080;transport=tcp"),
        "apartments[0].residents[0]: 'sip:101@127.0.0.1:5080;transport=tcp' asks for transport=tcp but the panel's "
        "sip.transport is 'udp'",
    ),
    ("resident-sips-on-udp-panel", resident("sips:101@127.0.0.1"), "is a sips: URI, which needs sip.transport = 'tls'"),
    ("no-residents", with_lines(RESIDENT, "residents = []"), "residents: at least"),
    ("fallback-bad-uri", with_lines('fallback = ""', 'fallback = "concierge"'), "fallback: 'concierge'"),
    (
        "fallback-tcp-on-udp-panel",
        with_lines('fallback = ""', 'fallback = "sip:c@127.0.0.1;transport=TCP"'),
        "apartments[0].fallback: 'sip:c@127.0.0.1;transport=TCP' asks for transport=tcp",
    ),
    ("strategy-bad", with_lines('strategy = "parallel"', 'strategy = "random"'), "apartments[0].strategy"),
    ("mode-bad", with_lines('mode = "talk"', 'mode = "video"'), "apartments[0].mode"),
    ("apartment-name-empty", with_lines('name = "Portaria"', 'name = " "'), "apartments[1]: name: must not be empty"),
    (
        "apartment-without-buttons",
        with_lines('buttons = ["concierge"]', "buttons = []"),
        "apartments[1]: buttons: at least one button is required",
    ),
    (
        "button-rings-nothing",
        with_lines("[relay]", '[[buttons]]\nname = "spare"\npin = 25\n\n[relay]'),
        "buttons[2]: 'spare' rings no apartment",
    ),
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
    (
        "apartments-missing",
        BASE.split("[[apartments]]")[0] + BASE.split("[paths]")[1].join(["[paths]", ""]),
        "apartments: at least one apartment is required",
    ),
    (
        "parallel-beyond-max-calls",
        sip("max_calls = 1").replace(RESIDENT, 'residents = ["sip:a@127.0.0.1", "sip:b@127.0.0.1"]'),
        "apartments[0].residents: 2 rung at once (strategy 'parallel') but sip.max_calls is 1",
    ),
    # --- sip
    ("transport-bad", with_lines('transport = "udp"', 'transport = "sctp"'), "sip.transport"),
    ("port-out-of-range", with_lines("port = 5070", "port = 70000"), "sip.port: 70000 out of range 0..65535"),
    ("port-negative", with_lines("port = 5070", "port = -3"), "sip.port: -3 out of range"),
    ("bind-address-garbage", sip('bind_address = "eth0"'), "sip: bind_address: 'eth0' is not an IPv4 address"),
    ("bind-address-ipv6", sip('bind_address = "::1"'), "bind_address: '::1' is an IPv6 address; IPv6 is not"),
    ("rtp-in-ephemeral-range", with_lines("rtp_port = 20000", "rtp_port = 40000"), "sip.rtp_port: 40000 out of"),
    ("rtp-range-negative", sip("rtp_port_range = -5"), "sip.rtp_port_range: -5 out of range"),
    ("rtp-range-zero", sip("rtp_port_range = 0"), "sip.rtp_port_range: 0 out of range"),
    ("rtp-range-huge", sip("rtp_port_range = 1000000"), "sip.rtp_port_range: 1000000 out of range"),
    (
        "rtp-range-into-ephemeral",
        sip("rtp_port_range = 15000"),
        "rtp_port: 20000 + rtp_port_range 15000 reaches 34999, inside Linux's ephemeral range",
    ),
    (
        "rtp-range-over-sip-port",
        with_lines("port = 5070", "port = 20050"),
        "sip: rtp_port: the RTP ports 20000..20099 include the SIP port 20050",
    ),
    ("rtp-range-too-small", sip("rtp_port_range = 4"), "rtp_port_range: 4 ports cannot carry max_calls = 8 calls"),
    ("allow-bad-uri", with_lines('inbound_allow = ["sip:concierge@127.0.0.1"]', 'inbound_allow = ["x"]'), "allow[0]"),
    (
        "inbound-source-not-an-address",
        with_lines('inbound_sources = ["127.0.0.1"]', 'inbound_sources = ["pbx.local"]'),
        "inbound_sources[0]: 'pbx.local' is not an IP address or network",
    ),
    (
        "inbound-source-bad-prefix",
        with_lines('inbound_sources = ["127.0.0.1"]', 'inbound_sources = ["10.0.0.0/33"]'),
        "inbound_sources[0]: '10.0.0.0/33'",
    ),
    (
        "inbound-source-ipv6",
        with_lines('inbound_sources = ["127.0.0.1"]', 'inbound_sources = ["2001:db8::/64"]'),
        "inbound_sources[0]: '2001:db8::/64' is IPv6",
    ),
    ("refuse-status-2xx", sip("inbound_refuse_status = 200").replace("inbound_refuse_status = 603\n", ""), "status"),
    ("max-calls-beyond-the-ioqueue", sip("max_calls = 16"), "sip.max_calls: 16 out of range 1..12"),
    ("max-calls-zero", sip("max_calls = 0"), "sip.max_calls: 0 out of range"),
    ("account-uri-bad", with_lines('uri = "sip:portao@127.0.0.1"', 'uri = "portao"'), "sip.account: uri: 'portao'"),
    (
        "account-uri-with-port",
        with_lines('uri = "sip:portao@127.0.0.1"', 'uri = "sip:portao@127.0.0.1:5070"'),
        "sip.account: uri: 'sip:portao@127.0.0.1:5070' has a port; pjsip drops it from the From header",
    ),
    ("registrar-bad", with_lines('registrar = ""', 'registrar = "pbx.local"'), "registrar: 'pbx.local'"),
    (
        "registrar-tcp-on-udp-panel",
        with_lines('registrar = ""', 'registrar = "sip:pbx.local;transport=tcp"'),
        "sip: account.registrar: 'sip:pbx.local;transport=tcp' asks for transport=tcp",
    ),
    (
        "password-file-without-username",
        account('password_file = "/etc/intercom/sip-password"'),
        "sip.account: password_file: given without username",
    ),
    ("password-without-username", account('password = "x"'), "sip.account: password: given without username"),
    ("password-and-file", account('username = "p"\npassword = "x"\npassword_file = "/p"'), "give one, not both"),
    ("tls-without-ca", with_lines('transport = "udp"', 'transport = "tls"'), "tls_ca_file: required"),
    ("tls-cert-without-key", sip('tls_cert_file = "/etc/c.pem"'), "tls_cert_file and tls_key_file: give both"),
    ("srtp-mandatory-over-udp", sip('srtp = "mandatory"'), "srtp: 'mandatory' needs transport = 'tls'"),
    # --- prompts and paths
    ("language-bad", with_lines('language = "pt-BR"', 'language = "fr"'), "prompts.language"),
    ("prompt-unknown", BASE + '\n[prompts.text]\ngreeting = "Oi"\n', "text.greeting: unknown prompt"),
    ("prompt-text-empty", BASE + '\n[prompts.text]\nwaiting = "  "\n', "prompts: text.waiting: empty"),
    (
        "prompt-wav-missing",
        BASE + '\n[prompts.files]\nwaiting = "/nonexistent/wait.wav"\n',
        "files.waiting: WAV file '/nonexistent/wait.wav' does not exist",
    ),
    ("piper-without-model", with_lines('engine = "espeak-ng"', 'engine = "piper"'), "piper_model: required"),
    (
        "piper-model-missing",
        with_lines('engine = "espeak-ng"', 'engine = "piper"\npiper_model = "/nonexistent/v.onnx"'),
        "piper_model: '/nonexistent/v.onnx' does not exist",
    ),
    (
        "state-dir-relative",
        with_lines('state_dir = "/var/lib/intercom"', 'state_dir = "var/lib/intercom"'),
        "paths: state_dir: 'var/lib/intercom' must be an absolute path",
    ),
]


def test_the_table_is_big_and_has_unique_ids() -> None:
    ids = [case[0] for case in BROKEN]
    assert len(ids) >= 100 and len(set(ids)) == len(ids)


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in BROKEN])
def test_broken_config_is_refused_naming_the_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "/etc/intercom/intercom.toml")
    message = str(info.value)
    assert message.startswith("/etc/intercom/intercom.toml: ")
    assert expected in message, message


def test_no_problem_quotes_a_door_code() -> None:
    """check-config's output reaches the journal: codes are named by their key, never shown."""
    codes = ["15", "159073", "47a", "0000", "4700", "470011"]
    text = with_lines('inbound_codes = ["1590"]', f'inbound_codes = ["{codes[0]}", "{codes[1]}"]')
    with pytest.raises(ConfigError) as info:
        parse_config(with_lines(APT0_CODES, f"codes = {codes[2:]!r}".replace("'", '"'), text))
    message = str(info.value)
    assert message.count("- inbound_codes[0]: ") == 2 and message.count("- apartments[0]: codes[") == 3, message
    with pytest.raises(ConfigError) as info:
        parse_config(with_lines(APT0_CODES, "codes = [470011]"))
    message += str(info.value)
    assert "apartments[0].codes[0]: expected a string" in message
    for code in codes:
        assert code not in message.replace(BASE, ""), (code, message)


def test_a_utf8_byte_order_mark_is_accepted() -> None:
    assert parse_config("\ufeff" + BASE) == parse_config(BASE)


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


# (case id, makes the file to load under tmp_path, what the problem report must contain)
BROKEN_FILES: list[tuple[str, Callable[[Path], Path], str]] = [
    ("missing", lambda d: d / "nowhere.toml", "the configuration file does not exist"),
    ("a-directory", lambda d: d, "the configuration file is a directory, not a file"),
    ("a-fifo", lambda d: fifo(d / "fifo"), "the configuration file is not a regular file"),
    ("empty", lambda d: write(d / "c.toml", ""), "the file is empty"),
    ("huge", lambda d: write(d / "c.toml", "#" * (1 << 20) + "\n"), "is larger than 1,048,576 bytes"),
    (
        "latin-1",
        lambda d: write(d / "c.toml", BASE.encode("latin-1")),
        "the configuration file is not UTF-8: byte 0xe3 at offset",
    ),
    (
        "binary",
        lambda d: write(d / "c.toml", b"\x7fELF\x02\x01\x01\x00\xff\xfe"),
        "is not UTF-8: byte 0xff at offset 8",
    ),
    (
        "password-file-missing",
        lambda d: write(d / "c.toml", account(f'username = "p"\npassword_file = "{d}/nope"')),
        f"sip.account.password_file: {Path('/')} ".strip(),
    ),
    (
        "password-file-empty",
        lambda d: (write(d / "pw", "\n"), write(d / "c.toml", account(f'username = "p"\npassword_file = "{d}/pw"')))[1],
        "sip.account.password_file: ",
    ),
    (
        "password-file-a-directory",
        lambda d: write(d / "c.toml", account(f'username = "p"\npassword_file = "{d}"')),
        "is a directory, not a file",
    ),
]


@pytest.mark.parametrize(("make", "expected"), [pytest.param(m, e, id=i) for i, m, e in BROKEN_FILES])
def test_broken_file_is_refused_naming_it(tmp_path: Path, make: Callable[[Path], Path], expected: str) -> None:
    path = make(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert expected in str(info.value), str(info.value)


def test_latin1_file_says_where_the_first_bad_byte_is(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", BASE.encode("latin-1"))
    offset = BASE.encode("latin-1").index("ã".encode("latin-1"))
    line = BASE[: BASE.index("ã")].count("\n") + 1
    with pytest.raises(ConfigError, match=rf"byte 0xe3 at offset {offset} \(line {line}\); save it as UTF-8"):
        load_config(path, environ={})


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", BASE)
    path.chmod(0)
    with pytest.raises(ConfigError, match="cannot read the configuration file: Permission denied"):
        load_config(path, environ={})


def _not_on_this_host() -> str:
    """An address of TEST-NET-1 (RFC 5737) this host does not have."""
    for last in range(1, 255):
        address = f"192.0.2.{last}"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((address, 0))
            except OSError:
                return address
    pytest.fail("this host has every address of 192.0.2.0/24")


# (case id, makes the config text under tmp_path, what the host problem must contain)
BROKEN_HOSTS: list[tuple[str, Callable[[Path], str], str]] = [
    (
        "runtime-dir-too-long-for-a-socket",
        lambda d: hermetic(d).replace(f'runtime_dir = "{d / "runtime_dir"}"', f'runtime_dir = "{d / ("r" * 110)}"'),
        "paths.runtime_dir: the control socket",
    ),
    (
        "state-dir-is-a-file",
        lambda d: (write(d / "state_dir", "x"), hermetic(d))[1],
        f"paths.state_dir: {Path('/')}".strip(),
    ),
    (
        "cache-dir-under-a-file",
        lambda d: (write(d / "file", "x"), hermetic(d).replace(str(d / "cache_dir"), str(d / "file" / "cache")))[1],
        "paths.cache_dir: ",
    ),
    (
        "bind-address-not-on-this-host",
        lambda d: hermetic(d, sip(f'bind_address = "{_not_on_this_host()}"')),
        "sip.bind_address: this host has no address 192.0.2.",
    ),
    (
        "tls-files-missing",
        lambda d: hermetic(
            d,
            with_lines('transport = "udp"', f'transport = "tls"\ntls_ca_file = "{d}/ca.pem"')
            .replace("sip:101@127.0.0.1:5080", "sips:101@127.0.0.1:5080")
            .replace("sip:concierge@127.0.0.1:5080", "sips:concierge@127.0.0.1:5080"),
        ),
        "sip.tls_ca_file: ",
    ),
    (
        "tls-ca-not-pem",
        lambda d: hermetic(
            d,
            with_lines('transport = "udp"', f'transport = "tls"\ntls_ca_file = "{write(d / "ca.pem", "not PEM")}"')
            .replace("sip:101@127.0.0.1:5080", "sips:101@127.0.0.1:5080")
            .replace("sip:concierge@127.0.0.1:5080", "sips:concierge@127.0.0.1:5080"),
        ),
        "holds no usable PEM certificate",
    ),
    (
        "prompt-file-not-a-wav",
        lambda d: hermetic(d, BASE + f'\n[prompts.files]\nwaiting = "{write(d / "w.wav", "RIFF? no")}"\n'),
        "prompts.files.waiting: ",
    ),
    (
        "prompt-file-empty-wav",
        lambda d: hermetic(d, BASE + f'\n[prompts.files]\nwaiting = "{write(d / "w.wav", b"")}"\n'),
        "prompts.files.waiting: ",
    ),
    (
        "piper-model-without-its-json",
        lambda d: hermetic(
            d, with_lines('engine = "espeak-ng"', f'engine = "piper"\npiper_model = "{write(d / "v.onnx", "x")}"')
        ),
        "prompts.piper_model: ",
    ),
    (
        "control-socket-path-is-a-file",
        _file_where_the_socket_goes,
        "control.sock exists and is not a socket",
    ),
    (
        "pin-factory-not-installed",
        lambda d: hermetic(d, with_lines('pin_factory = "mock"', 'pin_factory = "pigpio"')),
        "gpio.pin_factory: 'pigpio' needs the Python module pigpio, which is not installed",
    ),
]


@pytest.mark.parametrize(("make", "expected"), [pytest.param(m, e, id=i) for i, m, e in BROKEN_HOSTS])
def test_what_this_host_cannot_run_is_refused(tmp_path: Path, make: Callable[[Path], str], expected: str) -> None:
    config = parse_config(make(tmp_path))
    problems = host_problems(config)
    assert any(expected in p for p in problems), problems


def test_the_default_config_runs_on_this_host_when_its_directories_can_be_made(tmp_path: Path) -> None:
    assert host_problems(parse_config(hermetic(tmp_path))) == []


@pytest.mark.parametrize("name", ["Portão São João", "שער ראשי", "البوابة", "Tor 🚪", "Haus\tA"])
def test_names_in_any_script_are_accepted(name: str) -> None:
    """What is refused is formatting that lies about the text, not a language: right-to-left letters, emoji and
    accents are fine."""
    config = parse_config(with_lines('panel_name = "Portão principal"', f'panel_name = "{name}"'))
    assert config.panel_name == name
