"""The control socket: line-delimited JSON over a Unix stream socket, for ``intercomctl`` and scripts.

One request per line, one response per line::

    -> {"cmd": "press", "button": "101"}
    <- {"ok": true, "result": {...}}
    <- {"ok": false, "error": {"code": "bad_request", "message": "..."}}

``{"cmd": "events"}`` turns the connection into a stream: an ``{"ok": true, "result": "streaming"}``
acknowledgement, then one ``{"event": {...}}`` line per event until the client disconnects.

Access control is the file system: the socket is mode 0660 inside the runtime directory (0750 under
systemd's ``RuntimeDirectoryMode``), so only the daemon's user and group can connect. Each client's
``SO_PEERCRED`` uid is logged, so an ``open`` in the journal names who sent it.

Nothing a client sends can crash the server: every failure becomes an error line, and a connection that
misbehaves (a line over 64 KiB, idle too long, too slow to read its replies) is closed on its own.
"""

from __future__ import annotations

import json
import logging
import socket
import stat
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.abc
import anyio.lowlevel

from daemon.errors import ControlError, IntercomError

__all__ = [
    "COMMANDS",
    "MAX_LINE_BYTES",
    "ControlHandler",
    "ControlLimits",
    "serve_control",
]

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024


class ControlHandler(Protocol):
    """What the control server needs from the app. The app implements it; tests pass a fake."""

    async def status(self) -> dict[str, Any]: ...
    async def press(self, button: str) -> dict[str, Any]: ...
    async def open_door(self) -> dict[str, Any]: ...
    async def dial(self, uri: str) -> dict[str, Any]: ...
    async def hangup(self) -> dict[str, Any]: ...
    async def history(self, limit: int) -> list[dict[str, Any]]: ...
    def events(self) -> AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]: ...
    async def selftest(self) -> list[dict[str, Any]]: ...
    async def reload(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ControlLimits:
    idle_timeout: float = 60.0  # a client that sends no full line for this long is dropped
    handler_timeout: float = 30.0  # a command the app does not finish in time answers "timeout"
    send_timeout: float = 5.0  # a client that does not read its replies is dropped, not waited on
    max_clients: int = 16  # event streams hold a slot too; one more client gets "busy" and is closed
    max_line_bytes: int = MAX_LINE_BYTES


class _Reply(Exception):
    """An error response, raised inside request handling and turned into one JSON line."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# Command name -> {argument: (type, required)}. The table is the request schema: anything not in it is refused.
COMMANDS: dict[str, dict[str, tuple[type, bool]]] = {
    "status": {},
    "press": {"button": (str, True)},
    "open": {},
    "dial": {"uri": (str, True)},
    "hangup": {},
    "history": {"limit": (int, False)},
    "events": {},
    "selftest": {},
    "reload": {},
}
_HISTORY_LIMIT = range(1, 10_001)
_READ_ONLY = frozenset({"status", "history", "events", "selftest"})


def _parse(line: bytes) -> tuple[str, dict[str, Any]]:
    """Validate one request line; return (command, arguments) or raise :class:`_Reply`."""
    try:
        request = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Reply("bad_request", f"not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise _Reply("bad_request", f"a request must be a JSON object, got {type(request).__name__}")
    cmd = request.pop("cmd", None)
    if not isinstance(cmd, str):
        raise _Reply("bad_request", 'missing "cmd" (a string)')
    spec = COMMANDS.get(cmd)
    if spec is None:
        raise _Reply("unknown_command", f"unknown command {cmd!r}; accepted: {', '.join(COMMANDS)}")
    extra = sorted(set(request) - set(spec))
    if extra:
        raise _Reply("bad_request", f"{cmd}: unexpected argument(s) {extra}; accepted: {sorted(spec) or 'none'}")
    for name, (kind, required) in spec.items():
        if name not in request:
            if required:
                raise _Reply("bad_request", f"{cmd}: missing argument {name!r} ({kind.__name__})")
            continue
        value = request[name]
        # bool is an int subclass: {"limit": true} is a mistake, not 1.
        if not isinstance(value, kind) or isinstance(value, bool):
            raise _Reply("bad_request", f"{cmd}: {name} must be {kind.__name__}, got {type(value).__name__}")
        if isinstance(value, str) and not value.strip():
            raise _Reply("bad_request", f"{cmd}: {name} must not be empty")
    if "limit" in request and request["limit"] not in _HISTORY_LIMIT:
        raise _Reply("bad_request", f"history: limit must be 1..{_HISTORY_LIMIT[-1]}, got {request['limit']}")
    return cmd, request


def _dispatch(handler: ControlHandler, cmd: str, args: dict[str, Any]) -> Awaitable[Any]:
    match cmd:
        case "press":
            return handler.press(args["button"])
        case "dial":
            return handler.dial(args["uri"])
        case "history":
            return handler.history(args.get("limit", 20))
        case "open":
            return handler.open_door()
        case _:  # status, hangup, selftest, reload: same name, no arguments
            method: Callable[[], Awaitable[Any]] = getattr(handler, cmd)
            return method()


def _encode(message: dict[str, Any]) -> bytes:
    # default=str: a stray datetime or Path in a result is shown rather than failing the command.
    try:
        text = json.dumps(message, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError as exc:  # NaN, or a circular structure: the app's bug, the client still gets a line
        text = json.dumps(_error("failed", f"the result is not valid JSON: {exc}"))
    return text.encode("utf-8") + b"\n"


def _error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


class _TooLarge(Exception):
    pass


class _Socket:
    """A non-blocking Unix stream socket driven by ``anyio.wait_readable``/``wait_writable``.

    Why not anyio's own UNIX socket streams: on asyncio (anyio 4.16) a read cancelled in the same loop
    iteration as the socket turns readable makes the loop log ``InvalidStateError`` from a
    ``Future.set_result`` callback, which happens whenever the daemon stops while a client is talking.
    ``wait_readable`` guards against that, and a line protocol needs no more than this.
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.buffer = bytearray()

    def peer_uid(self) -> int | None:
        try:
            creds = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except OSError:
            return None
        return int(struct.unpack("3i", creds)[1])

    async def receive(self) -> bytes:
        """Some bytes, or b"" at end of stream."""
        await anyio.lowlevel.checkpoint()  # a client flooding us must not starve the rest of the loop
        while True:
            try:
                return self.sock.recv(65536)
            except BlockingIOError:
                await anyio.wait_readable(self.sock)

    async def receive_line(self, limit: int) -> bytes | None:
        """The next line without its newline; None at end of stream. Raises _TooLarge past ``limit`` bytes."""
        while True:
            end = self.buffer.find(b"\n")
            if end > limit or (end < 0 and len(self.buffer) > limit):
                raise _TooLarge
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 1]
                return line
            chunk = await self.receive()
            if not chunk:
                return None
            self.buffer += chunk

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        await anyio.lowlevel.checkpoint()
        while view:
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                await anyio.wait_writable(self.sock)

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            anyio.notify_closing(self.sock)  # wakes a task still waiting on it with ClosedResourceError
            self.sock.close()


class _Connection:
    def __init__(self, sock: _Socket, handler: ControlHandler, limits: ControlLimits) -> None:
        self.sock = sock
        self.handler = handler
        self.limits = limits
        self.uid = sock.peer_uid()

    async def send(self, message: dict[str, Any]) -> None:
        with anyio.fail_after(self.limits.send_timeout):
            await self.sock.send(_encode(message))

    async def serve(self) -> None:
        while True:
            try:
                with anyio.fail_after(self.limits.idle_timeout):
                    line = await self.sock.receive_line(self.limits.max_line_bytes)
            except _TooLarge:
                await self.send(_error("too_large", f"request line over {self.limits.max_line_bytes} bytes"))
                return  # the rest of the oversized line is unreadable as a request: close
            except TimeoutError:
                log.debug("control: uid %s idle for %.0f s, closing", self.uid, self.limits.idle_timeout)
                return
            if line is None:
                return
            if not line.strip():
                continue
            try:
                cmd, args = _parse(line)
            except _Reply as reply:
                await self.send(_error(reply.code, reply.message))
                continue
            # Commands that change something are worth the journal; monitoring polls are not.
            level = logging.DEBUG if cmd in _READ_ONLY else logging.INFO
            log.log(level, "control: uid %s: %s %s", self.uid, cmd, args or "")
            if cmd == "events":
                try:
                    await self.stream_events()
                except Exception as exc:
                    if _is_disconnect(exc):
                        raise
                    log.exception("control: the event stream failed")
                    await _send_quietly(self, _error("failed", f"event stream: {type(exc).__name__}: {exc}"))
                return
            await self.send(await self.run_command(cmd, args))

    async def run_command(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        try:
            with anyio.fail_after(self.limits.handler_timeout):
                return {"ok": True, "result": await _dispatch(self.handler, cmd, args)}
        except TimeoutError:
            log.warning("control: %s did not finish in %.0f s", cmd, self.limits.handler_timeout)
            return _error("timeout", f"{cmd} did not finish in {self.limits.handler_timeout:g} s")
        except ControlError as exc:  # the app refusing a well-formed request (e.g. no such button)
            return _error("refused", str(exc))
        except IntercomError as exc:
            log.warning("control: %s failed: %s", cmd, exc)
            return _error("failed", str(exc))
        except Exception as exc:  # a bug in the app must not take the control socket down with it
            log.exception("control: %s raised", cmd)
            return _error("failed", f"{type(exc).__name__}: {exc}")

    async def stream_events(self) -> None:
        async with self.handler.events() as events, anyio.create_task_group() as tg:
            await self.send({"ok": True, "result": "streaming"})
            # The event source may stay silent for hours: watch the client too, so a disconnect frees
            # the slot now rather than at the next event. Anything it sends is ignored.
            tg.start_soon(self._cancel_on_disconnect, tg.cancel_scope)
            async for event in events:
                await self.send({"event": event})
            tg.cancel_scope.cancel()

    async def _cancel_on_disconnect(self, scope: anyio.CancelScope) -> None:
        with suppress(*_DISCONNECTS):
            while await self.sock.receive():  # no timeout: waiting for the client to leave is the point
                pass
        scope.cancel()


def _claim(path: Path) -> tuple[socket.socket, int]:
    """Bind and listen at ``path``: the socket and the file's inode. Blocking: run in a worker thread.

    A socket left by a crash is removed; a live daemon answering there is refused, not displaced.
    """
    # Outside systemd nothing made the runtime directory: make it private to the daemon's user.
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(mode):
            raise ControlError(f"{path} exists and is not a socket; remove it or set paths.runtime_dir")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(2)
            try:
                probe.connect(str(path))
            except (ConnectionRefusedError, FileNotFoundError):
                log.info("control: removing stale socket %s", path)
                path.unlink(missing_ok=True)
            except TimeoutError:  # a listener with a full backlog is still a listener: do not steal its path
                raise ControlError(f"another intercomd is already listening on {path}") from None
            else:
                raise ControlError(f"another intercomd is already listening on {path}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(str(path))
        path.chmod(0o660)  # the daemon's user and group: intercomctl users join the group
        sock.listen(64)
        return sock, path.lstat().st_ino
    except BaseException:
        sock.close()
        raise


async def serve_control(
    path: Path | str,
    handler: ControlHandler,
    *,
    limits: ControlLimits = ControlLimits(),  # frozen: a shared default is safe
    task_status: anyio.abc.TaskStatus[Path] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the control socket at ``path`` until cancelled. Start with ``await tg.start(serve_control, ...)``.

    Raises :class:`ControlError` before ``task_status.started`` when another daemon owns the socket.
    """
    path = Path(path)
    # File-system calls go to a worker thread: the loop thread never blocks, even on a slow SD card.
    raw, inode = await anyio.to_thread.run_sync(_claim, path)
    listener = _Socket(raw)
    slots = anyio.CapacityLimiter(limits.max_clients)
    log.info("control: listening on %s", path)

    async def client(sock: _Socket) -> None:
        with closing(sock):
            conn = _Connection(sock, handler, limits)
            try:
                slots.acquire_on_behalf_of_nowait(conn)
            except anyio.WouldBlock:
                log.warning("control: %d clients connected, refusing uid %s", limits.max_clients, conn.uid)
                await _send_quietly(conn, _error("busy", f"too many clients (max {limits.max_clients})"))
                return
            try:
                await conn.serve()
            except Exception as exc:  # one broken connection must never stop the listener
                if _is_disconnect(exc):
                    log.debug("control: uid %s dropped: %r", conn.uid, exc)
                else:
                    log.exception("control: connection from uid %s failed", conn.uid)
            finally:
                slots.release_on_behalf_of(conn)

    try:
        with closing(listener):
            async with anyio.create_task_group() as tg:
                task_status.started(path)
                while True:
                    await anyio.wait_readable(listener.sock)  # also a checkpoint: a connect flood cannot hog the loop
                    try:
                        peer, _ = listener.sock.accept()
                    except BlockingIOError:
                        continue
                    except OSError as exc:  # EMFILE and friends: back off rather than spin
                        log.warning("control: accept failed: %s", exc)
                        await anyio.sleep(0.5)
                        continue
                    tg.start_soon(client, _Socket(peer))
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_unlink_own_socket, path, inode)


_DISCONNECTS = (TimeoutError, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


def _is_disconnect(exc: BaseException) -> bool:
    """A client going away or too slow: expected, logged at debug. Task groups wrap it in a group."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_disconnect(e) for e in exc.exceptions)
    return isinstance(exc, _DISCONNECTS)


async def _send_quietly(conn: _Connection, message: dict[str, Any]) -> None:
    with suppress(*_DISCONNECTS):
        await conn.send(message)


def _unlink_own_socket(path: Path, inode: int) -> None:
    # Only remove the file if it is still ours: another daemon may have bound the path since.
    try:
        if path.lstat().st_ino == inode:
            path.unlink()
    except OSError:
        pass
