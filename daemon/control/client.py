"""``intercomctl``: talk to a running ``intercomd`` over its control socket.

A plain blocking socket: this is a short-lived command-line tool, so an event loop would add nothing.
Every failure is one line on stderr and an exit status of its own (:class:`Exit`), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Iterator
from enum import IntEnum
from pathlib import Path
from typing import Any, TextIO

from daemon.control.display import (
    print_event,
    print_history,
    print_mapping,
    print_reload,
    print_selftest,
)
from daemon.control.protocol import HISTORY_LIMITS, ErrorCode

__all__ = ["DEFAULT_SOCKET", "ControlClient", "CtlError", "Exit", "main"]

DEFAULT_SOCKET = Path(os.environ.get("INTERCOM_CONTROL_SOCKET", "/run/intercom/control.sock"))
MAX_REPLY_BYTES = 16 * 1024 * 1024  # a history reply can be long; a runaway one must still end
DEFAULT_TIMEOUT = 35.0  # a little over the server's own per-command limit (30 s), so its "timeout" reply wins


class Exit(IntEnum):
    """intercomctl's exit statuses (sysexits.h where one fits)."""

    OK = 0
    FAILED = 1  # the daemon refused or failed the command; the door did not open; a reload was refused; ...
    USAGE = 2  # argparse's own
    NOT_RUNNING = 69  # EX_UNAVAILABLE: no socket, or nobody listening on it
    CONNECTION_LOST = 74  # EX_IOERR: the daemon closed or broke the connection before its whole answer
    BUSY = 75  # EX_TEMPFAIL: too many clients or event followers; try again shortly
    PROTOCOL = 76  # EX_PROTOCOL: the answer is not the control protocol
    NO_PERMISSION = 77  # EX_NOPERM: not root and not in the daemon's group
    TIMEOUT = 124  # as timeout(1): no answer in time


EXIT_HELP = """\
exit status:
  0    done
  1    the daemon refused or failed the command, the door did not open, a reload was
       refused, a simulated press was refused, or a self-test check failed
  2    usage error
  69   intercomd is not running (no control socket, or nobody listening on it)
  74   intercomd closed the connection before its whole answer, or ended the event
       stream (it stopped or crashed)
  75   intercomd is busy (too many clients or event followers): try again shortly
  76   the answer was not the control protocol (is this intercomd's socket?)
  77   permission denied: run as root or as a member of the daemon's group
  124  no answer in time (--timeout, or the daemon's own limit for the command)
"""


class CtlError(Exception):
    """A failure with the exit status it maps to."""

    def __init__(self, message: str, status: Exit) -> None:
        super().__init__(message)
        self.status = status


def _connect_error(path: Path, exc: OSError) -> CtlError:
    if isinstance(exc, PermissionError):
        return CtlError(
            f"permission denied on {path}: run as root or as a member of the intercom group", Exit.NO_PERMISSION
        )
    if isinstance(exc, ConnectionRefusedError) and path.exists() and not path.is_socket():
        return CtlError(f"{path} is not a socket: is --socket (or $INTERCOM_CONTROL_SOCKET) right?", Exit.NOT_RUNNING)
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
        return CtlError(f"intercomd is not running (no control socket at {path}: {exc.strerror})", Exit.NOT_RUNNING)
    if isinstance(exc, TimeoutError | BlockingIOError):  # a listener whose backlog is full (EAGAIN on AF_UNIX)
        return CtlError(f"daemon busy: {path} accepts no more connections", Exit.BUSY)
    return CtlError(f"cannot connect to {path}: {exc.strerror or exc}", Exit.NOT_RUNNING)


def _reply_error(error: Any) -> CtlError:
    code = error.get("code") if isinstance(error, dict) else None
    message = error.get("message", "") if isinstance(error, dict) else str(error)
    if code == ErrorCode.BUSY:
        return CtlError(f"daemon busy: {message}", Exit.BUSY)
    if code == ErrorCode.TIMEOUT:
        return CtlError(f"timeout: {message}", Exit.TIMEOUT)
    if code == ErrorCode.ENDED:  # while following: the daemon is going away
        return CtlError(message, Exit.CONNECTION_LOST)
    return CtlError(f"{code or 'error'}: {message}", Exit.FAILED)


class ControlClient:
    """One connection to the control socket; ``request`` sends a command and returns the result."""

    def __init__(self, path: Path, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except OSError as exc:
            self.sock.close()
            raise _connect_error(path, exc) from None
        self._buffer = b""

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, request: dict[str, Any]) -> None:
        try:
            self.sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError as exc:
            # The daemon may have answered and closed before reading us ("busy"): that answer is still in our
            # receive buffer, and it says more than "Broken pipe".
            lost = CtlError(f"intercomd closed the connection: {exc.strerror or exc}", Exit.CONNECTION_LOST)
            self.sock.settimeout(1.0)
            try:
                reply = self.read()
            except CtlError:
                raise lost from None
            if reply.get("ok") is False:
                raise _reply_error(reply.get("error")) from None
            raise lost from None

    def read(self, *, timeout: float | None = -1.0) -> dict[str, Any]:
        """One reply line. ``timeout=None`` waits forever (following events); -1 keeps the client's timeout."""
        if timeout is None or timeout >= 0:
            self.sock.settimeout(timeout)
        while b"\n" not in self._buffer:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise CtlError("intercomd did not answer in time", Exit.TIMEOUT) from None
            except OSError as exc:
                raise CtlError(
                    f"lost the connection to intercomd: {exc.strerror or exc}", Exit.CONNECTION_LOST
                ) from None
            if not chunk:
                where = "in the middle of an answer" if self._buffer else "without answering"
                raise CtlError(f"intercomd closed the connection {where}", Exit.CONNECTION_LOST)
            self._buffer += chunk
            if len(self._buffer) > MAX_REPLY_BYTES:
                raise CtlError(f"an answer over {MAX_REPLY_BYTES} bytes", Exit.PROTOCOL)
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            reply = json.loads(line)
        except (ValueError, RecursionError):  # ValueError covers bad UTF-8 and JSON
            reply = None
        if not isinstance(reply, dict):
            raise CtlError(f"not a control-protocol answer: {line[:80]!r}", Exit.PROTOCOL)
        return reply

    def request(self, request: dict[str, Any]) -> Any:
        self.send(request)
        reply = self.read()
        if reply.get("ok") is True:
            return reply.get("result")
        raise _reply_error(reply.get("error", reply))

    def events(self) -> Iterator[dict[str, Any]]:
        self.request({"cmd": "events"})
        while True:
            reply = self.read(timeout=None)  # events may be hours apart; Ctrl-C ends the wait
            if isinstance(reply.get("event"), dict):
                yield reply["event"]
            elif reply.get("ok") is False:
                raise _reply_error(reply.get("error"))
            else:
                raise CtlError(f"not a control-protocol event: {str(reply)[:80]}", Exit.PROTOCOL)


# --- command line ----------------------------------------------------------------------------------------


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0 < seconds < 86400:  # also refuses nan and inf, which settimeout() would raise on
        raise argparse.ArgumentTypeError("must be more than 0 and less than 86400 seconds")
    return seconds


def _history_limit(value: str) -> int:
    try:
        limit = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if limit not in HISTORY_LIMITS:
        raise argparse.ArgumentTypeError(f"must be {HISTORY_LIMITS[0]}..{HISTORY_LIMITS[-1]}")
    return limit


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="intercomctl",
        description="Control a running intercomd. Times are shown in this machine's local time.",
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--socket",
        type=Path,
        default=DEFAULT_SOCKET,
        help=f"control socket (default {DEFAULT_SOCKET}; or $INTERCOM_CONTROL_SOCKET)",
    )
    p.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, help="seconds to wait for an answer")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text, description=help_text, epilog=EXIT_HELP)
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.add_argument("--json", action="store_true", help="print the daemon's answer as JSON")
        return parser

    command("status", "daemon, SIP and panel state")
    command("press", "simulate a doorbell button press; exit 1 if the press was refused").add_argument("button")
    command("open", "pulse the door relay now; exit 1 (and say why) if it did not energize").add_argument(
        "door", nargs="?", help="which door (default: the panel's)"
    )
    command("dial", "call a SIP URI from the panel").add_argument("uri")
    command("hangup", "end the visit in progress and calls placed with dial")
    history = command("history", "recent visits, newest first, in local time")
    history.add_argument("--limit", type=_history_limit, default=20, help="how many (1..1000, default 20)")
    history.add_argument("--wide", action="store_true", help="every field, not just the columns that fit 80")
    events = command("events", "print events as they happen (until Ctrl-C)")
    events.add_argument("--follow", "-f", action="store_true", help="keep following (the default; accepted for habit)")
    command("selftest", "run the self-test; exit 1 if any check fails")
    command("reload", "re-read the configuration (as SIGHUP); exit 1 if it was refused")
    directory = command("directory", "the apartments as a directory file (CSV, codes left out)")
    directory.add_argument("action", choices=("export",), help="export: print the CSV")
    return p


def _request(args: argparse.Namespace) -> dict[str, Any]:
    request: dict[str, Any] = {"cmd": args.command}
    match args.command:
        case "press":
            request["button"] = args.button
        case "open" if args.door:
            request["door"] = args.door
        case "dial":
            request["uri"] = args.uri
        case "history":
            request["limit"] = args.limit
    return request


def _status_of(command: str, result: Any) -> Exit:
    """Whether what was asked for happened: a well-formed answer can still say no."""
    ok = True
    if isinstance(result, dict):
        if command == "open":
            ok = result.get("opened") is True
        elif command == "reload":
            ok = result.get("reloaded") is True
        elif command == "press":
            ok = not str(result.get("result", "")).startswith("refused")
    elif command == "selftest" and isinstance(result, list):
        ok = all(isinstance(c, dict) and c.get("passed") for c in result)
    return Exit.OK if ok else Exit.FAILED


def _follow(client: ControlClient, as_json: bool, out: TextIO) -> Exit:
    for event in client.events():
        if as_json:
            out.write(json.dumps(event, ensure_ascii=False) + "\n")
        else:
            print_event(event, out)
        out.flush()  # piped into grep/tee: each event as it happens
    return Exit.OK


def _print(command: str, result: Any, args: argparse.Namespace, out: TextIO) -> None:
    if args.json:
        out.write(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    elif command == "history" and isinstance(result, list):
        print_history(result, out, wide=args.wide)
    elif command == "selftest" and isinstance(result, list):
        print_selftest(result, out)
    elif command == "directory" and isinstance(result, dict):
        out.write(str(result.get("csv", "")))
    elif command == "reload" and isinstance(result, dict):
        print_reload(result, out)
    elif command == "open" and isinstance(result, dict):
        print_mapping({k: v for k, v in result.items() if v != ""}, out)  # no empty "reason" when it opened
    else:
        print_mapping(result, out)


def _run(args: argparse.Namespace, out: TextIO) -> Exit:
    with ControlClient(args.socket, timeout=args.timeout) as client:
        if args.command == "events":
            return _follow(client, args.json, out)
        result = client.request(_request(args))
    _print(args.command, result, args, out)
    return _status_of(args.command, result)


def main(argv: list[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        return int(_run(args, out))
    except CtlError as exc:
        err.write(f"intercomctl: {exc}\n")
        return int(exc.status)
    except KeyboardInterrupt:  # how `events` is meant to end; anything else was cut short
        return int(Exit.OK) if args.command == "events" else 130
    except BrokenPipeError:  # `intercomctl events | head`: the reader left, which is fine
        if out is sys.stdout:  # and Python's final flush of stdout must not complain about it either
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(Exit.OK)


if __name__ == "__main__":
    raise SystemExit(main())
