"""The allowlist's pure parts: who a caller claims to be (From) and where the INVITE came from."""

from __future__ import annotations

import pytest

from daemon.sip._uri import caller_allowed, source_allowed

ALLOW = ("sip:concierge@127.0.0.1", "sip:guard@pbx.example:5062")


@pytest.mark.parametrize(
    ("remote", "allowed"),
    [
        ('"Concierge" <sip:concierge@127.0.0.1>;tag=x', True),
        ("<sip:concierge@127.0.0.1:5099>", True),  # no port in the entry: any port
        ("sip:guard@PBX.example:5062", True),  # hosts compare without case
        ("sip:guard@pbx.example", False),  # the entry's port 5062 vs the default 5060
        ("sip:Concierge@127.0.0.1", False),  # users are case-sensitive (RFC 3261 19.1.4)
        ("sip:concierge@127.0.0.2", False),
        ("<tel:+5511999999999>", False),
        ("", False),
    ],
)
def test_caller_allowed(remote: str, allowed: bool) -> None:
    assert caller_allowed(remote, ALLOW) is allowed


@pytest.mark.parametrize(
    ("source", "networks", "allowed"),
    [
        ("10.0.0.7:5060", (), True),  # no inbound_sources: any address
        ("10.0.0.7:5060", ("10.0.0.0/24",), True),
        ("10.0.1.7:5060", ("10.0.0.0/24",), False),
        ("10.0.0.7:5060", ("192.168.1.2", "10.0.0.7"), True),
        ("127.0.0.2:40000", ("127.0.0.1",), False),
        ("[2001:db8::5]:5060", ("2001:db8::/64",), True),
        ("[2001:db8:1::5]:5060", ("2001:db8::/64",), False),
        ("10.0.0.7:5060", ("2001:db8::/64",), False),  # another family never matches
        ("garbage", ("10.0.0.0/8",), False),
    ],
)
def test_source_allowed(source: str, networks: tuple[str, ...], allowed: bool) -> None:
    assert source_allowed(source, networks) is allowed
