"""The control protocol, without I/O: the request schema, parsing a request line, and the reply lines.

Line-delimited JSON over a Unix stream socket, one request per line and one reply per line::

    -> {"cmd": "press", "button": "101"}
    <- {"ok": true, "result": {...}}
    <- {"ok": false, "error": {"code": "bad_request", "message": "..."}}

``{"cmd": "events"}`` turns the connection into a stream: an ``{"ok": true, "result": "streaming"}``
acknowledgement, then one ``{"event": {...}}`` line per event, and an error line if the stream is cut
(``too_slow``: the client did not keep up; ``ended``: the daemon is stopping).

Everything a client can send goes through :func:`parse_request`, which either returns a typed request or
raises :class:`RequestError`; it never raises anything else (tests/control/test_protocol.py fuzzes it).
The limits below are why: JSON's parser recurses per nesting level and converts any number of digits, so
a hostile line could otherwise raise RecursionError or ValueError (Python's 4,300-digit int limit).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from daemon.errors import ControlError

__all__ = [
    "MAX_LINE_BYTES",
    "CommandRequest",
    "ControlHandler",
    "DialRequest",
    "DirectoryRequest",
    "ErrorCode",
    "EventsRequest",
    "HangupRequest",
    "HistoryRequest",
    "OpenRequest",
    "Peer",
    "PressRequest",
    "ReloadRequest",
    "Request",
    "RequestError",
    "SelftestRequest",
    "StatusRequest",
    "encode",
    "error_reply",
    "event_line",
    "ok_reply",
    "parse_request",
]

MAX_LINE_BYTES = 64 * 1024  # a request is a few dozen bytes; this is generous and still bounds memory
MAX_DEPTH = 4  # requests are flat objects (depth 1); deeper is refused before json sees it
MAX_INT_DIGITS = 18  # fits in 64 bits; Python would otherwise convert (or refuse, with ValueError) any length
MAX_SHOWN = 80  # characters of client input echoed in an error message


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"  # not a valid request: the message says what is wrong
    UNKNOWN_COMMAND = "unknown_command"
    TOO_LARGE = "too_large"  # a line over MAX_LINE_BYTES: answered, then the connection is closed
    REFUSED = "refused"  # well formed, but the app said no (no such button, ...)
    FAILED = "failed"  # the app tried and failed (SIP error, a bug)
    TIMEOUT = "timeout"  # the app did not finish in time, or the client sent no full request in time
    BUSY = "busy"  # too many clients or event followers: try again later
    TOO_SLOW = "too_slow"  # an event follower fell behind and was disconnected
    ENDED = "ended"  # the app ended the event stream (the daemon is stopping)


class RequestError(ControlError):
    """A request the server answers with an error line instead of running it."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Command(StrEnum):
    STATUS = "status"
    PRESS = "press"
    OPEN = "open"
    DIAL = "dial"
    HANGUP = "hangup"
    HISTORY = "history"
    EVENTS = "events"
    SELFTEST = "selftest"
    RELOAD = "reload"
    DIRECTORY = "directory"


# --- requests --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusRequest:
    command: ClassVar[Command] = Command.STATUS


@dataclass(frozen=True)
class PressRequest:
    button: str
    command: ClassVar[Command] = Command.PRESS


@dataclass(frozen=True)
class OpenRequest:
    door: str | None = None  # a [[doors]] name; None: the panel's first door
    command: ClassVar[Command] = Command.OPEN


@dataclass(frozen=True)
class DialRequest:
    uri: str
    command: ClassVar[Command] = Command.DIAL


@dataclass(frozen=True)
class HangupRequest:
    command: ClassVar[Command] = Command.HANGUP


HISTORY_LIMITS = range(1, 1001)


@dataclass(frozen=True)
class HistoryRequest:
    limit: int = 20
    command: ClassVar[Command] = Command.HISTORY


@dataclass(frozen=True)
class EventsRequest:
    command: ClassVar[Command] = Command.EVENTS


@dataclass(frozen=True)
class SelftestRequest:
    command: ClassVar[Command] = Command.SELFTEST


@dataclass(frozen=True)
class ReloadRequest:
    command: ClassVar[Command] = Command.RELOAD


@dataclass(frozen=True)
class DirectoryRequest:
    """The apartments as a directory file (CSV; codes left out)."""

    command: ClassVar[Command] = Command.DIRECTORY


# One reply each. Events is not among them: the server streams it itself (see ControlHandler.events).
CommandRequest = (
    StatusRequest
    | PressRequest
    | OpenRequest
    | DialRequest
    | HangupRequest
    | HistoryRequest
    | SelftestRequest
    | ReloadRequest
    | DirectoryRequest
)
Request = CommandRequest | EventsRequest

# The schema: command -> (request class, {argument: (type, required, max length for str / range for int)}).
_Arg = tuple[type, bool, int | range]
_SCHEMA: dict[Command, tuple[type[Request], dict[str, _Arg]]] = {
    Command.STATUS: (StatusRequest, {}),
    Command.PRESS: (PressRequest, {"button": (str, True, 64)}),
    Command.OPEN: (OpenRequest, {"door": (str, False, 64)}),
    Command.DIAL: (DialRequest, {"uri": (str, True, 512)}),
    Command.HANGUP: (HangupRequest, {}),
    Command.HISTORY: (HistoryRequest, {"limit": (int, False, HISTORY_LIMITS)}),
    Command.EVENTS: (EventsRequest, {}),
    Command.SELFTEST: (SelftestRequest, {}),
    Command.RELOAD: (ReloadRequest, {}),
    Command.DIRECTORY: (DirectoryRequest, {}),
}
READ_ONLY = frozenset({Command.STATUS, Command.HISTORY, Command.EVENTS, Command.SELFTEST})


@dataclass(frozen=True)
class Peer:
    """Who is on the other end (SO_PEERCRED); None when the kernel would not say."""

    uid: int | None
    pid: int | None = None

    def __str__(self) -> str:
        return f"control socket (uid {self.uid if self.uid is not None else '?'})"


class ControlHandler(Protocol):
    """What the server needs from the app side: :class:`daemon.control.adapter.AppControl` implements it."""

    async def execute(self, request: CommandRequest, peer: Peer) -> object: ...
    def events(self) -> AbstractAsyncContextManager[AsyncIterator[dict[str, object]]]: ...


# --- parsing ---------------------------------------------------------------------------------------------


def shown(text: str) -> str:
    """Client input as it may appear in a reply or the log: quoted, escaped, and cut short."""
    quoted = repr(text)
    return quoted if len(quoted) <= MAX_SHOWN else quoted[: MAX_SHOWN - 3] + "..."


_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # Unicode categories refused in string arguments
_SIP_URI = re.compile(r"sips?:\S+", re.IGNORECASE)
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_INNERMOST = re.compile(rb"\[[^\[\]{}]*\]|\{[^\[\]{}]*\}")
_BRACKETS = re.compile(rb"[\[\]{}]")


def _check_depth(line: bytes) -> None:
    """Refuse nesting deeper than MAX_DEPTH before json recurses into it.

    Strings are blanked first (brackets inside them do not count), then innermost pairs are removed once per
    level: at most MAX_DEPTH passes, each a C-speed regex over at most MAX_LINE_BYTES.
    """
    if line.count(b"[") + line.count(b"{") <= MAX_DEPTH:
        return
    rest = _STRINGS.sub(b'""', line)
    for _ in range(MAX_DEPTH):
        rest, removed = _INNERMOST.subn(b"", rest)
        if not removed:
            break
    if _BRACKETS.search(rest):
        raise RequestError(ErrorCode.BAD_REQUEST, f"nested deeper than {MAX_DEPTH} levels, or unbalanced")


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise RequestError(ErrorCode.BAD_REQUEST, f"an integer longer than {MAX_INT_DIGITS} digits")
    return int(digits)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise RequestError(ErrorCode.BAD_REQUEST, f"a number out of range: {shown(text)}")
    return value


def _no_constants(name: str) -> object:
    raise RequestError(ErrorCode.BAD_REQUEST, f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of two equal keys silently: {"cmd": "status", "cmd": "open"} would be ambiguous.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise RequestError(ErrorCode.BAD_REQUEST, f"key {shown(key)} given twice")
        result[key] = value
    return result


def _loads(line: bytes) -> object:
    _check_depth(line)
    try:
        text = line.decode("utf-8")
        return json.loads(
            text,
            parse_int=_bounded_int,
            parse_float=_finite_float,
            parse_constant=_no_constants,
            object_pairs_hook=_unique_keys,
        )
    except RequestError:
        raise
    except UnicodeDecodeError as exc:
        raise RequestError(ErrorCode.BAD_REQUEST, f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise RequestError(ErrorCode.BAD_REQUEST, f"not valid JSON: {exc.msg} at column {exc.colno}") from None
    except (RecursionError, ValueError, OverflowError) as exc:  # the limits above should make these unreachable
        raise RequestError(ErrorCode.BAD_REQUEST, f"not a usable JSON value: {type(exc).__name__}") from None


def _check_text(cmd: Command, name: str, value: str, max_len: int) -> None:
    if not value.strip():
        raise RequestError(ErrorCode.BAD_REQUEST, f"{cmd}: {name} must not be empty")
    if len(value) > max_len:
        raise RequestError(ErrorCode.BAD_REQUEST, f"{cmd}: {name} is longer than {max_len} characters")
    # Control characters and line separators would forge lines in the journal, format characters (U+202E) would
    # disguise what it shows, and lone surrogates cannot be written back as UTF-8.
    if any(unicodedata.category(c) in _UNPRINTABLE for c in value):
        raise RequestError(ErrorCode.BAD_REQUEST, f"{cmd}: {name} holds control or format characters: {shown(value)}")


def parse_request(line: bytes) -> Request:
    """One request line (without its newline) -> a typed request. Raises :class:`RequestError`, only."""
    if len(line) > MAX_LINE_BYTES:
        raise RequestError(ErrorCode.TOO_LARGE, f"request line over {MAX_LINE_BYTES} bytes")
    request = _loads(line)
    if not isinstance(request, dict):
        raise RequestError(ErrorCode.BAD_REQUEST, f"a request must be a JSON object, got {_json_type(request)}")
    name = request.pop("cmd", None)
    if not isinstance(name, str):
        raise RequestError(ErrorCode.BAD_REQUEST, 'missing "cmd" (a string)')
    try:
        cmd = Command(name)
    except ValueError:
        accepted = ", ".join(Command)
        raise RequestError(ErrorCode.UNKNOWN_COMMAND, f"unknown command {shown(name)}; accepted: {accepted}") from None
    kind, spec = _SCHEMA[cmd]
    extra = sorted(set(request) - set(spec))
    if extra:
        listed = ", ".join(shown(k) for k in extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        accepted = ", ".join(spec) or "none"
        raise RequestError(ErrorCode.BAD_REQUEST, f"{cmd}: unexpected argument(s) {listed}; accepted: {accepted}")
    args: dict[str, Any] = {}  # checked against the schema above
    for name, (arg_type, required, bound) in spec.items():
        if name not in request:
            if required:
                raise RequestError(ErrorCode.BAD_REQUEST, f"{cmd}: missing argument {name!r} ({arg_type.__name__})")
            continue
        value = request[name]
        # bool is an int subclass: {"limit": true} is a mistake, not 1.
        if not isinstance(value, arg_type) or isinstance(value, bool):
            raise RequestError(
                ErrorCode.BAD_REQUEST, f"{cmd}: {name} must be {arg_type.__name__}, got {_json_type(value)}"
            )
        if isinstance(value, str) and isinstance(bound, int):
            _check_text(cmd, name, value, bound)
            if name == "uri" and not _SIP_URI.fullmatch(value):  # the app checks it fully; this keeps junk out
                raise RequestError(ErrorCode.BAD_REQUEST, f"{cmd}: uri must be sip:... or sips:..., got {shown(value)}")
        if isinstance(value, int) and isinstance(bound, range) and value not in bound:
            raise RequestError(ErrorCode.BAD_REQUEST, f"{cmd}: {name} must be {bound[0]}..{bound[-1]}, got {value}")
        args[name] = value
    return kind(**args)


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", int: "int", float: "number", bool: "bool"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


# --- replies ---------------------------------------------------------------------------------------------


def encode(message: dict[str, object]) -> bytes:
    """One reply line. Never raises: a result that is not JSON becomes a ``failed`` error line."""
    try:
        # default=str: a stray datetime or Path in a result is shown rather than failing the command.
        text = json.dumps(message, ensure_ascii=False, default=str, allow_nan=False)
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:  # a lone surrogate in a result (a ValueError too, so first): write it escaped
        return json.dumps(message, ensure_ascii=True, default=str).encode() + b"\n"
    except (ValueError, TypeError, RecursionError) as exc:  # NaN, a cycle, a bad key: the app's bug
        fallback = error_message(ErrorCode.FAILED, f"the result is not valid JSON: {type(exc).__name__}: {exc}")
        return json.dumps(fallback).encode() + b"\n"


def ok_reply(result: object) -> bytes:
    return encode({"ok": True, "result": result})


def error_message(code: ErrorCode, message: str) -> dict[str, object]:
    return {"ok": False, "error": {"code": str(code), "message": message}}


def error_reply(code: ErrorCode, message: str) -> bytes:
    return encode(error_message(code, message))


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def event_line(event: dict[str, object]) -> bytes:
    """One event. A value JSON cannot carry (NaN) is sent as text: an error line would end the client's stream."""
    return encode({"event": _finite(event)})
