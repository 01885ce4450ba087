"""The request parser and the reply lines, without a socket: good requests, bad ones, hostile ones, fuzz."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

import pytest

from daemon.control.protocol import (
    MAX_LINE_BYTES,
    DialRequest,
    ErrorCode,
    EventsRequest,
    HangupRequest,
    HistoryRequest,
    OpenRequest,
    PressRequest,
    ReloadRequest,
    RequestError,
    SelftestRequest,
    StatusRequest,
    encode,
    error_reply,
    event_line,
    ok_reply,
    parse_request,
)

GOOD: list[tuple[dict[str, Any], object]] = [
    ({"cmd": "status"}, StatusRequest()),
    ({"cmd": "press", "button": "101"}, PressRequest("101")),
    ({"cmd": "open"}, OpenRequest()),
    ({"cmd": "open", "door": "gate"}, OpenRequest("gate")),
    ({"cmd": "dial", "uri": "sip:101@pbx"}, DialRequest("sip:101@pbx")),
    ({"cmd": "hangup"}, HangupRequest()),
    ({"cmd": "history"}, HistoryRequest(20)),
    ({"cmd": "history", "limit": 1000}, HistoryRequest(1000)),
    ({"cmd": "events"}, EventsRequest()),
    ({"cmd": "selftest"}, SelftestRequest()),
    ({"cmd": "reload"}, ReloadRequest()),
    ({"cmd": "press", "button": "Portão"}, PressRequest("Portão")),  # not ASCII, still a name
]


@pytest.mark.parametrize(("request_", "parsed"), GOOD, ids=lambda v: str(v)[:40])
def test_good_requests_parse_to_typed_requests(request_: dict[str, Any], parsed: object) -> None:
    assert parse_request(json.dumps(request_, ensure_ascii=False).encode()) == parsed


BAD = [
    (b"{not json", ErrorCode.BAD_REQUEST, "not valid JSON"),
    (b"\xff\xfe", ErrorCode.BAD_REQUEST, "not UTF-8"),
    (b"[1, 2]", ErrorCode.BAD_REQUEST, "must be a JSON object, got array"),
    (b'"status"', ErrorCode.BAD_REQUEST, "got string"),
    (b"null", ErrorCode.BAD_REQUEST, "got null"),
    (b"{}", ErrorCode.BAD_REQUEST, 'missing "cmd"'),
    (b'{"cmd": 5}', ErrorCode.BAD_REQUEST, 'missing "cmd"'),
    (b'{"cmd": "explode"}', ErrorCode.UNKNOWN_COMMAND, "unknown command 'explode'"),
    (b'{"cmd": "press"}', ErrorCode.BAD_REQUEST, "missing argument 'button'"),
    (b'{"cmd": "press", "button": 101}', ErrorCode.BAD_REQUEST, "button must be str, got int"),
    (b'{"cmd": "press", "button": "  "}', ErrorCode.BAD_REQUEST, "must not be empty"),
    (b'{"cmd": "press", "button": "1\\n01"}', ErrorCode.BAD_REQUEST, "control or format characters"),
    (b'{"cmd": "press", "button": "\\ud800"}', ErrorCode.BAD_REQUEST, "control or format characters"),
    (b'{"cmd": "press", "button": "10\\u202e1"}', ErrorCode.BAD_REQUEST, "control or format characters"),
    (b'{"cmd": "dial", "uri": "sip:a\\u2028b"}', ErrorCode.BAD_REQUEST, "control or format characters"),
    (b'{"cmd": "dial", "uri": null}', ErrorCode.BAD_REQUEST, "uri must be str, got null"),
    (b'{"cmd": "dial", "uri": "not a uri"}', ErrorCode.BAD_REQUEST, "uri must be sip:... or sips:..., got 'not a uri'"),
    (b'{"cmd": "history", "limit": "20"}', ErrorCode.BAD_REQUEST, "limit must be int, got string"),
    (b'{"cmd": "history", "limit": true}', ErrorCode.BAD_REQUEST, "limit must be int, got bool"),
    (b'{"cmd": "history", "limit": 0}', ErrorCode.BAD_REQUEST, "limit must be 1..1000"),
    (b'{"cmd": "history", "limit": 2.5}', ErrorCode.BAD_REQUEST, "limit must be int, got number"),
    (b'{"cmd": "open", "force": true}', ErrorCode.BAD_REQUEST, "unexpected argument(s) 'force'"),
    (b'{"cmd": "status", "cmd": "open"}', ErrorCode.BAD_REQUEST, "key 'cmd' given twice"),
    (b'{"cmd": "status", "x": NaN}', ErrorCode.BAD_REQUEST, "NaN is not valid JSON"),
    (b'{"cmd": "status", "x": -Infinity}', ErrorCode.BAD_REQUEST, "-Infinity is not valid JSON"),
    (b'{"cmd": "status", "x": 1e999}', ErrorCode.BAD_REQUEST, "a number out of range"),
]


@pytest.mark.parametrize(("line", "code", "message"), BAD, ids=lambda v: str(v)[:40])
def test_bad_requests_say_what_is_wrong(line: bytes, code: ErrorCode, message: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(line)
    assert caught.value.code == code
    assert message in caught.value.message


# The probe's two cases, and their siblings: each raised RecursionError or ValueError inside json before.
HOSTILE = [
    (b"[" * MAX_LINE_BYTES, "nested deeper than 4 levels"),
    (b'{"cmd": "status", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested deeper than 4 levels"),
    (b'{"a":' * 6000 + b"1" + b"}" * 6000, "nested deeper than 4 levels"),
    (b'{"cmd": "history", "limit": ' + b"9" * 5000 + b"}", "an integer longer than 18 digits"),
    (b"-" + b"1" * 5000, "an integer longer than 18 digits"),
    (b'{"cmd": "status", "x": 1' + b"0" * 400 + b".5}", "a number out of range"),
]


@pytest.mark.parametrize(("line", "message"), HOSTILE, ids=lambda v: str(v)[:30])
def test_hostile_lines_get_an_error_not_an_exception(line: bytes, message: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(line)
    assert message in caught.value.message
    assert len(error_reply(caught.value.code, caught.value.message)) < 500  # the reply does not echo the line


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    assert parse_request(b'{"cmd": "press", "button": "[[[[[[[[{{{{"}') == PressRequest("[[[[[[[[{{{{")


def test_echoed_input_is_cut_short() -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(json.dumps({"cmd": "x" * 50_000}).encode())
    assert len(caught.value.message) < 300
    extra = {f"k{i}": 1 for i in range(3000)}
    with pytest.raises(RequestError) as caught:
        parse_request(json.dumps({"cmd": "status", **extra}).encode())
    assert "and 2995 more" in caught.value.message and len(caught.value.message) < 300


def test_a_line_over_the_limit_is_too_large() -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(b" " * (MAX_LINE_BYTES + 1))
    assert caught.value.code == ErrorCode.TOO_LARGE


def _hostile_line(rng: random.Random) -> bytes:
    """One line from a mix of generators: random bytes, mutated requests, deep or huge values."""
    choice = rng.randrange(9)
    if choice == 8:  # a valid request with arbitrary valid arguments: the parser must not refuse too much
        name = "".join(rng.choices(string.ascii_letters + string.digits + "çã -_@.:", k=rng.randrange(1, 60)))
        return json.dumps(
            rng.choice(
                [
                    {"cmd": "press", "button": name},
                    {"cmd": "dial", "uri": "sip:" + name},
                    {"cmd": "history", "limit": rng.randrange(1, 1001)},
                    {"cmd": "open", "door": name},
                    {"cmd": rng.choice(["status", "hangup", "events", "selftest", "reload"])},
                ]
            ),
            ensure_ascii=rng.random() < 0.5,
        ).encode()
    if choice == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(200))).replace(b"\n", b"")
    if choice == 1:  # a good request, mutated byte by byte
        good = bytearray(json.dumps(rng.choice(GOOD)[0]).encode())
        for _ in range(rng.randrange(1, 6)):
            good[rng.randrange(len(good))] = rng.randrange(256)
        return bytes(good).replace(b"\n", b"")
    if choice == 2:  # nesting, balanced or not, inside and outside strings
        depth = rng.randrange(1, 8_000)  # json recursed once per level: 1,000 was enough to raise
        opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}"), (b'"[', b'"')])
        return opener * depth + rng.choice([b"", b"1", b"null"]) + closer * rng.randrange(depth + 1)
    if choice == 3:  # numbers of every length and shape
        digits = "".join(rng.choices(string.digits, k=rng.randrange(1, 6000)))
        number = rng.choice([digits, "-" + digits, digits + ".5", "1e" + digits[:6], "0." + digits])
        return f'{{"cmd": "history", "limit": {number}}}'.encode()
    if choice == 4:  # strings with escapes, control characters, surrogates
        alphabet = ["a", "\\n", "\\u0000", "\\ud800", "\\udfff", "\\\\", '\\"', "é", "\x7f", "\\u202e"]
        value = "".join(rng.choices(alphabet, k=rng.randrange(300)))
        return f'{{"cmd": "{rng.choice(["press", "dial", "open"])}", "button": "{value}", "uri": "{value}"}}'.encode()
    if choice == 5:  # valid JSON of the wrong shape
        shapes: list[object] = [[], {}, "", 0, None, True, 1.5, {"cmd": None}, {"cmd": []}, {"cmd": {"cmd": "status"}}]
        return json.dumps(rng.choice(shapes)).encode()
    if choice == 6:  # a right command with arguments of every type
        arg = rng.choice(["button", "uri", "limit", "door", "cmd", "", "x" * 100])
        values: list[object] = ["", " ", "101", -1, 0, 10**18, 10**19, 1e308, False, None, [], {}]
        return json.dumps({"cmd": rng.choice(GOOD)[0]["cmd"], arg: rng.choice(values)}).encode()
    keys = b",".join(b'"%d":1' % rng.randrange(100) for _ in range(rng.randrange(1, 2000)))  # duplicates, many keys
    return b'{"cmd": "status",' + keys + b"}"


def test_fuzz_the_parser_answers_every_line() -> None:
    rng = random.Random(20261126)
    outcomes = {"parsed": 0, "refused": 0}
    for _ in range(3000):
        line = _hostile_line(rng)[:MAX_LINE_BYTES]
        try:
            request = parse_request(line)
        except RequestError as exc:
            reply = error_reply(exc.code, exc.message)
            outcomes["refused"] += 1
        else:
            reply = ok_reply(repr(request))
            outcomes["parsed"] += 1
        assert reply.endswith(b"\n") and reply.count(b"\n") == 1, reply
        assert isinstance(json.loads(reply), dict)
    assert outcomes["refused"] > 1800 and outcomes["parsed"] > 200, outcomes  # the mix reached both sides


def test_replies_are_one_line_even_for_results_that_are_not_json() -> None:
    assert json.loads(ok_reply({"since": Path("/x")})) == {"ok": True, "result": {"since": "/x"}}
    nan = json.loads(ok_reply({"level": float("nan")}))
    assert nan["error"]["code"] == "failed" and "not valid JSON" in nan["error"]["message"]
    cycle: dict[str, object] = {}
    cycle["self"] = cycle
    assert json.loads(encode({"ok": True, "result": cycle}))["error"]["code"] == "failed"
    surrogate = ok_reply({"name": "\ud800"})  # a lone surrogate from the app: escaped, not a crash
    assert surrogate.count(b"\n") == 1 and json.loads(surrogate)["result"]["name"] == "\ud800"
    assert json.loads(ok_reply({"line": "a\nb"}))["result"]["line"] == "a\nb"  # newlines stay escaped
    assert json.loads(event_line({"event": "X", "level": float("nan")})) == {"event": {"event": "X", "level": "nan"}}
