"""``intercomctl``: talk to a running ``intercomd`` over its control socket.

A plain blocking socket: this is a short-lived command-line tool, so an event loop would add nothing.

Exit status: 0 done; 1 the daemon refused or failed the command, or a self-test failed; 2 usage;
69 (EX_UNAVAILABLE) the daemon is not running; 75 (EX_TEMPFAIL) it did not answer in time;
76 (EX_PROTOCOL) it answered something that is not the control protocol; 77 (EX_NOPERM) permission denied
(the caller is not in the daemon's group).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

__all__ = ["DEFAULT_SOCKET", "ControlClient", "CtlError", "main"]

DEFAULT_SOCKET = Path(os.environ.get("INTERCOM_CONTROL_SOCKET", "/run/intercom/control.sock"))

EX_UNAVAILABLE = 69
EX_TEMPFAIL = 75
EX_PROTOCOL = 76
EX_NOPERM = 77
MAX_REPLY_BYTES = 16 * 1024 * 1024  # a history reply can be long; a runaway one must still end


class CtlError(Exception):
    """A failure with the exit status it maps to."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ControlClient:
    """One connection to the control socket; ``request`` sends a command and returns the parsed reply."""

    def __init__(self, path: Path, *, timeout: float = 35.0) -> None:
        # timeout: a little over the server's own per-command limit (30 s), so its "timeout" reply wins.
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            self.sock.close()
            raise CtlError(
                f"intercomd is not running (no control socket at {path}: {exc.strerror})", EX_UNAVAILABLE
            ) from None
        except PermissionError:
            self.sock.close()
            raise CtlError(
                f"permission denied on {path}: run as root or as a member of the intercom group", EX_NOPERM
            ) from None
        except OSError as exc:
            self.sock.close()
            raise CtlError(f"cannot connect to {path}: {exc}", EX_UNAVAILABLE) from None
        self._buffer = b""

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, request: dict[str, Any]) -> None:
        try:
            self.sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError as exc:
            raise CtlError(f"lost the connection to intercomd: {exc}", EX_UNAVAILABLE) from None

    def read(self, *, timeout: float | None = -1.0) -> dict[str, Any]:
        """One reply line. ``timeout=None`` waits forever (following events); -1 keeps the client's timeout."""
        if timeout is None or timeout >= 0:
            self.sock.settimeout(timeout)
        while b"\n" not in self._buffer:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise CtlError("intercomd did not answer in time", EX_TEMPFAIL) from None
            except OSError as exc:
                raise CtlError(f"lost the connection to intercomd: {exc}", EX_UNAVAILABLE) from None
            if not chunk:
                raise CtlError("intercomd closed the connection", EX_UNAVAILABLE)
            self._buffer += chunk
            if len(self._buffer) > MAX_REPLY_BYTES:
                raise CtlError("reply too large", EX_PROTOCOL)
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            reply = json.loads(line)
        except ValueError:
            raise CtlError(f"not a control-protocol reply: {line[:80]!r}", EX_PROTOCOL) from None
        if not isinstance(reply, dict):
            raise CtlError(f"not a control-protocol reply: {line[:80]!r}", EX_PROTOCOL)
        return reply

    def request(self, request: dict[str, Any]) -> Any:
        self.send(request)
        reply = self.read()
        if reply.get("ok") is True:
            return reply.get("result")
        error = reply.get("error") or {}
        raise CtlError(f"{error.get('code', 'error')}: {error.get('message', reply)}", 1)

    def events(self) -> Iterator[dict[str, Any]]:
        self.request({"cmd": "events"})
        while True:
            reply = self.read(timeout=None)  # events may be hours apart; Ctrl-C ends the wait
            if "event" in reply:
                yield reply["event"]
            elif reply.get("ok") is False:
                raise CtlError(str(reply.get("error")), 1)


# --- human output ----------------------------------------------------------------------------------------


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        yield prefix, ", ".join(_text(v) for v in value) or "-"
    else:
        yield prefix, _text(value)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def print_mapping(result: Any, out: TextIO) -> None:
    """``key: value`` lines, values aligned; nested objects as dotted keys."""
    if not isinstance(result, dict):
        out.write(f"{_text(result)}\n")
        return
    rows = list(_flatten(result))
    width = max((len(k) for k, _ in rows), default=0) + 1
    for key, value in rows:
        out.write(f"{key + ':':<{width}} {value}\n")


def print_table(rows: list[dict[str, Any]], out: TextIO, columns: list[str] | None = None) -> None:
    if not rows:
        out.write("(none)\n")
        return
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))  # first-seen order across rows
    cells = [[_text(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    header = [c.upper() for c in columns]
    for line in (header, *cells):
        out.write("  ".join(f"{cell:<{w}}" for cell, w in zip(line, widths, strict=True)).rstrip() + "\n")


def _first(row: dict[str, Any], *keys: str) -> Any:
    return next((row[k] for k in keys if k in row), None)


def _passed(check: dict[str, Any]) -> bool:
    return bool(_first(check, "ok", "passed"))


def print_selftest(checks: list[dict[str, Any]], out: TextIO) -> bool:
    """PASS/FAIL table; True when every check passed. Rows are {name|check, ok|passed, detail|message}."""
    rows = [
        {
            "result": "PASS" if _passed(c) else "FAIL",
            "check": _first(c, "name", "check") or "?",
            "detail": _first(c, "detail", "message") or "",
        }
        for c in checks
    ]
    print_table(rows, out, ["result", "check", "detail"])
    return all(_passed(c) for c in checks)


_EVENT_HEAD = (("timestamp", "time"), ("name", "type", "event"))


def print_event(event: dict[str, Any], out: TextIO) -> None:
    """``<time> <name> key=value ...``: the time and the event's name first, whichever keys carry them."""
    used = [next((k for k in keys if k in event), "") for keys in _EVENT_HEAD]
    head = [str(event[k]) for k in used if k]
    rest = " ".join(f"{k}={_text(v)}" for k, v in event.items() if k not in used)
    out.write(" ".join([*head, rest]).strip() + "\n")


# --- command line ----------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="intercomctl", description="Control a running intercomd.")
    p.add_argument(
        "--socket",
        type=Path,
        default=DEFAULT_SOCKET,
        help=f"control socket (default {DEFAULT_SOCKET}; or $INTERCOM_CONTROL_SOCKET)",
    )
    p.add_argument("--timeout", type=float, default=35.0, help="seconds to wait for an answer")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = sub.add_parser("status", help="daemon, SIP and panel state")
    status.add_argument("--json", action="store_true", help="print the raw JSON result")
    press = sub.add_parser("press", help="simulate a doorbell button press")
    press.add_argument("button")
    sub.add_parser("open", help="pulse the door relay now")
    dial = sub.add_parser("dial", help="call a SIP URI from the panel")
    dial.add_argument("uri")
    sub.add_parser("hangup", help="end the current call(s)")
    history = sub.add_parser("history", help="recent visits")
    history.add_argument("--json", action="store_true")
    history.add_argument("--limit", type=int, default=20)
    events = sub.add_parser("events", help="print events as they happen (until Ctrl-C)")
    events.add_argument("--follow", "-f", action="store_true", help="keep following (the default; accepted for habit)")
    events.add_argument("--json", action="store_true")
    selftest = sub.add_parser("selftest", help="run the self-test; exit status 1 if any check fails")
    selftest.add_argument("--json", action="store_true")
    sub.add_parser("reload", help="re-read the configuration (as SIGHUP)")
    return p


def _run(args: argparse.Namespace, out: TextIO) -> int:
    with ControlClient(args.socket, timeout=args.timeout) as client:
        if args.command == "events":
            for event in client.events():
                if args.json:
                    out.write(json.dumps(event, ensure_ascii=False) + "\n")
                else:
                    print_event(event, out)
                out.flush()  # piped into grep/tee: each event as it happens
            return 0
        request: dict[str, Any] = {"cmd": args.command}
        if args.command == "press":
            request["button"] = args.button
        elif args.command == "dial":
            request["uri"] = args.uri
        elif args.command == "history":
            request["limit"] = args.limit
        result = client.request(request)
    if getattr(args, "json", False):
        out.write(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
        if args.command == "selftest":
            return 0 if all(_passed(c) for c in result) else 1
        return 0
    if args.command == "history":
        print_table(result, out)
    elif args.command == "selftest":
        return 0 if print_selftest(result, out) else 1
    else:
        print_mapping(result, out)
    return 0


def main(argv: list[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        return _run(args, out)
    except CtlError as exc:
        err.write(f"intercomctl: {exc}\n")
        return exc.status
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `intercomctl events | head`: the reader left, which is fine
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
