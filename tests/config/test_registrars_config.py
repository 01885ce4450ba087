"""``[sip.account]`` registrars, retries, jitter, refresh margin and keep-alive: accepted, ranged, consistent."""

from __future__ import annotations

import pytest

from daemon.config import SipAccountConfig, parse_config
from daemon.errors import ConfigError
from tests.config.configs import account, with_lines


def test_one_registrar_string_still_works() -> None:
    config = parse_config(with_lines('registrar = ""', 'registrar = "sip:10.0.0.2"'))
    assert config.sip.account.registrar == "sip:10.0.0.2"
    assert config.sip.account.registrars == ("sip:10.0.0.2",)


def test_an_ordered_list_of_registrars() -> None:
    text = account('registrars = ["sip:10.0.0.2", "sip:10.0.0.3:5070"]\nfailover_seconds = 4\nretry_seconds = 20')
    a = parse_config(text).sip.account
    assert a.registrars == ("sip:10.0.0.2", "sip:10.0.0.3:5070")
    assert a.registrar == "sip:10.0.0.2"  # "is there a registrar?" keeps its answer for every other reader
    assert (a.failover_seconds, a.retry_seconds, a.retry_jitter_seconds) == (4.0, 20, 10)


def test_defaults_are_not_pjsuas_five_minutes() -> None:
    a = SipAccountConfig(registrar="sip:10.0.0.2")
    assert a.retry_seconds < 300 and a.retry_jitter_seconds > 0 and a.keepalive_seconds > 0


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ('registrars = ["sip:10.0.0.2", "sip:pbx:99999"]', "registrars[1]: 'sip:pbx:99999' is not a SIP URI"),
        ('registrars = ["sip:10.0.0.2", "sip:10.0.0.2"]', "registrars: the same registrar is listed twice"),
        ('registrars = ["sip:10.0.0.2", "sip:10.0.0.3;transport=tcp"]', "account.registrars[1]"),
        ("retry_seconds = 1", "retry_seconds: 1 out of range 5..3600 seconds"),
        ("retry_jitter_seconds = 601", "retry_jitter_seconds"),
        ("failover_seconds = 0", "failover_seconds"),
        ("retry_seconds = 10\nretry_jitter_seconds = 10", "retry_jitter_seconds: 10 is not below retry_seconds 10"),
        ("keepalive_seconds = -1", "keepalive_seconds"),
        (
            'registrars = ["sip:10.0.0.2"]\nregister_expiry = 60\nrefresh_margin_seconds = 60',
            "refresh_margin_seconds: 60 is not below register_expiry 60",
        ),
    ],
)
def test_bad_settings_are_refused_naming_the_key(lines: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(account(lines))
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_registrar_and_registrars_must_agree() -> None:
    text = with_lines('registrar = ""', 'registrar = "sip:10.0.0.9"\nregistrars = ["sip:10.0.0.2"]')
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert any("is not the first of registrars" in p for p in caught.value.problems)
