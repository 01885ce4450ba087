"""The one SIP URI parser (what the config accepts and pjsua can dial) and the allowlist's pure parts: who a
caller claims to be (From) and where the INVITE came from."""

from __future__ import annotations

import pytest

from daemon.sip._uri import SipUri, SipUriError, caller_allowed, parse_sip_uri, source_allowed

TRANSPORT = "transport"
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


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("sip:101@10.0.0.5", SipUri("sip", "101", "10.0.0.5")),
        ("SIP:101@PBX.Example.com:5062", SipUri("sip", "101", "pbx.example.com", 5062)),
        ("sips:guard@pbx.example", SipUri("sips", "guard", "pbx.example")),
        ("sip:pbx.local", SipUri("sip", "", "pbx.local")),  # a registrar: no user
        (
            "sip:127.0.0.1:5080;transport=TCP;lr",
            SipUri("sip", "", "127.0.0.1", 5080, (("transport", "tcp"), ("lr", ""))),
        ),
        ("sip:%2B5511@h;user=phone", SipUri("sip", "%2B5511", "h", None, (("user", "phone"),))),
        ("sip:a.b-c_d!~*'()&=+$,;?/x@h-1.example", SipUri("sip", "a.b-c_d!~*'()&=+$,;?/x", "h-1.example")),
    ],
)
def test_parse_accepts_what_pjsua_dials(text: str, parsed: SipUri) -> None:
    assert SipUri.parse(text) == parsed
    assert SipUri.parse(str(parsed)) == parsed  # str() gives the canonical form back


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("101@host", "does not start with sip: or sips:"),
        ("tel:+5511999999999", "does not start with sip: or sips:"),
        ("http://x", "does not start with sip: or sips:"),
        ("sip:::::", "has no host"),
        ("sip:101@", "has no host"),
        ("sip:@host", "user part '' is empty"),
        ("sip:101@host:99999", "port '99999' is not a port number 1..65535"),
        ("sip:101@host:0", "port '0'"),
        ("sip:101@host:0005060", "port '0005060'"),
        ("sip:101@host:" + "9" * 5000, "is not a port number"),
        ("sip:101@host:", "port ''"),
        ("sip:101@host:5060:5060", "port '5060:5060'"),
        ("sip:101@host:-1", "port '-1'"),
        ("sip:101@[2001:db8::1]:5060", "IPv6 addresses are not supported"),
        ("sip:101@300.1.1.1", "host '300.1.1.1' is not an IPv4 address"),
        ("sip:101@1.2.3", "host '1.2.3' is not an IPv4 address"),
        ("sip:101@-host", "host '-host' is not a host name"),
        ("sip:101@ho st", "has spaces"),
        ("sip:101@host..example", "is not a host name"),
        ("sip:101@" + "a" * 64 + ".example", "is not a host name"),
        ("sip:101:secret@host", "has a password in it"),
        ("sip:a@b@host", "has more than one @"),
        ("sip:101@host?subject=x", "URI headers (?...) are not supported"),
        ("sip:101@host;transport=pigeon", "transport 'pigeon' is not one of"),
        ("sip:101@host;transport=udp;transport=tcp", "parameter 'transport' is given twice"),
        ("sip:101@host;", "parameter '' is not name or name=value"),
        ("sip:101@host;a=b c", "has spaces"),
        ("<sip:101@host>", "write the bare URI"),
        ('"Door" sip:101@host', "has spaces"),
        ("sip:é@host", "user part 'é'"),
    ],
)
def test_parse_refuses_what_cannot_be_dialled_saying_why(text: str, reason: str) -> None:
    with pytest.raises(SipUriError) as info:
        SipUri.parse(text)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("header", "uri"),
    [
        ('"Door" <sip:door@10.0.0.5:5062;ob>;tag=x', "sip:door@10.0.0.5:5062;ob"),
        ("sip:door@10.0.0.5;tag=x", "sip:door@10.0.0.5"),  # without <>, parameters are the header's
        ("<sip:door@10.0.0.5", None),  # no closing bracket
        ("<tel:+5511>", None),
        ("<sip:door@[::1]>", None),
        ("\x00garbage", None),
    ],
)
def test_parse_sip_uri_finds_the_uri_in_a_header_and_never_raises(header: str, uri: str | None) -> None:
    found = parse_sip_uri(header)
    assert (str(found) if found is not None else None) == uri
