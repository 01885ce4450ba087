"""The control socket: the Unix socket itself, who may hold a connection and for how long.

Access control is the file system: the socket is mode 0660 inside the runtime directory (0750 under
systemd's ``RuntimeDirectoryMode``), so only the daemon's user and group can connect. Each client's
``SO_PEERCRED`` uid is logged, so an ``open`` in the journal names who sent it.

Connection policy (:class:`ControlLimits`), so that no client, idle or slow or hostile, keeps others out:

- at most ``max_clients`` connections. When all are taken, a new one takes the slot of the connection that
  has waited longest for its next request, if that is over ``idle_grace`` (intercomctl sends its request as
  soon as it connects: only idle connections are ever closed this way). Otherwise it is answered ``busy``.
- a client has ``request_timeout`` seconds to send each full request; blank lines and refused lines do not
  reset the clock, so trickling bytes cannot hold a slot.
- event followers may hold all but ``reserved_for_commands`` slots, so a command always finds one. A follower
  gets events through a bounded queue: one that falls behind is told (``too_slow``) and closed, one that does
  not read at all is closed when a send stalls for ``send_timeout``.
"""

from __future__ import annotations

import logging
import math
from contextlib import closing, suppress
from dataclasses import dataclass, fields
from pathlib import Path

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream

from daemon.control._unix import DISCONNECTS, LineSocket, TooLarge, claim_socket, is_disconnect, unlink_own_socket
from daemon.control.protocol import (
    MAX_LINE_BYTES,
    READ_ONLY,
    CommandRequest,
    ControlHandler,
    ErrorCode,
    EventsRequest,
    RequestError,
    error_reply,
    event_line,
    ok_reply,
    parse_request,
)
from daemon.errors import ControlError, IntercomError

__all__ = ["ControlLimits", "serve_control"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ControlLimits:
    request_timeout: float = 5.0  # to send each full request line, from connecting or from the last answer
    command_timeout: float = 30.0  # a command the app does not finish in time answers "timeout"
    send_timeout: float = 5.0  # a client that does not read its replies is dropped, not waited on
    max_clients: int = 16  # connections at once, followers included; one more is answered "busy"
    idle_grace: float = 1.0  # waiting this long for a request, a connection may be closed to admit a new one
    reserved_for_commands: int = 1  # slots event followers may never take
    follower_queue: int = 64  # events waiting for a slow follower before it is dropped
    max_line_bytes: int = MAX_LINE_BYTES

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            least = 0 if f.name in ("reserved_for_commands", "idle_grace") else 1e-9
            if not (math.isfinite(value) and value >= least):
                raise ControlError(f"ControlLimits.{f.name} must be a finite number of at least {least:g}, got {value}")
        if not 0 <= self.reserved_for_commands < self.max_clients:
            raise ControlError("ControlLimits.reserved_for_commands must be 0..max_clients-1")

    @property
    def max_followers(self) -> int:
        return self.max_clients - self.reserved_for_commands


class _Throttled:
    """A warning any local client can trigger at will: the first, then at most one per ``interval``, with a count."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self.last = -math.inf
        self.suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        now = anyio.current_time()
        if now - self.last < self.interval:
            self.suppressed += 1
            return
        if self.suppressed:
            message, args = f"{message} (and %d more since the last such line)", (*args, self.suppressed)
        log.warning(message, *args)
        self.last, self.suppressed = now, 0


class _Slots:
    """Who holds a connection slot, and who is idle. Only the loop thread touches it: no lock needed."""

    def __init__(self, limits: ControlLimits) -> None:
        self.limits = limits
        self.clients = 0
        self.followers = 0
        self.idle: dict[_Connection, float] = {}  # connections waiting for a request line -> since (loop clock)
        self.refusals = _Throttled()  # "busy" answers, which a connect loop can make by the thousand

    def admit(self, conn: _Connection) -> bool:
        """A slot for ``conn``: a free one, or the one of the connection idle longest past ``idle_grace``."""
        if self.clients >= self.limits.max_clients and not self._evict_idlest():
            return False
        self.clients += 1
        conn.holds_slot = True
        return True

    def release(self, conn: _Connection) -> None:
        """Idempotent: an evicted connection's slot is released when it is evicted, not again when it ends."""
        self.idle.pop(conn, None)
        if conn.holds_slot:
            conn.holds_slot = False
            self.clients -= 1

    def _evict_idlest(self) -> bool:
        if not self.idle:
            return False
        conn, since = min(self.idle.items(), key=lambda item: item[1])
        if anyio.current_time() - since < self.limits.idle_grace:
            return False
        self.release(conn)  # its slot is the newcomer's now, before the evicted task even runs
        conn.evict()
        return True


class _Connection:
    """One client: its requests answered in order, or its event stream."""

    def __init__(self, sock: LineSocket, handler: ControlHandler, limits: ControlLimits, slots: _Slots) -> None:
        self.sock = sock
        self.handler = handler
        self.limits = limits
        self.slots = slots
        self.peer = sock.peer()
        self.stream_end: tuple[ErrorCode, str] = (ErrorCode.ENDED, "the daemon ended the event stream")
        self.holds_slot = False
        self.evicted = False
        self._waiting: anyio.CancelScope | None = None  # set while waiting for a request: what evict() cancels

    def evict(self) -> None:
        self.evicted = True
        if self._waiting is not None:
            self._waiting.cancel()

    async def send(self, data: bytes) -> None:
        with anyio.fail_after(self.limits.send_timeout):
            await self.sock.send(data)

    async def send_quietly(self, data: bytes) -> None:
        """A last word to a client that may already be gone: no error if it cannot be delivered."""
        with suppress(*DISCONNECTS):
            await self.send(data)

    async def serve(self) -> None:
        # One deadline per request: blank lines and refused lines do not extend it, so a client cannot hold its
        # slot by trickling bytes; only an answered command starts the next request's clock.
        idle_since = anyio.current_time()
        deadline = idle_since + self.limits.request_timeout
        while True:
            with anyio.CancelScope(deadline=deadline) as waiting:
                self._waiting, self.slots.idle[self] = waiting, idle_since
                try:
                    line = await self.sock.receive_line(self.limits.max_line_bytes)
                except TooLarge:
                    too_large = f"request line over {self.limits.max_line_bytes} bytes"
                    await self.send(error_reply(ErrorCode.TOO_LARGE, too_large))
                    return  # the rest of the oversized line is unreadable as a request: close
                finally:
                    self._waiting = None
                    self.slots.idle.pop(self, None)
            if self.evicted:
                log.debug("control: uid %s idle while all slots were taken, closing", self.peer.uid)
                await self.send_quietly(
                    error_reply(ErrorCode.TIMEOUT, "closed to make room: send a request on connecting")
                )
                return
            if waiting.cancelled_caught:
                log.debug("control: uid %s sent no full request in time, closing", self.peer.uid)
                no_request = f"no full request within {self.limits.request_timeout:g} s"
                await self.send_quietly(error_reply(ErrorCode.TIMEOUT, no_request))
                return
            if line is None:
                return
            if not line.strip():
                continue
            try:
                request = parse_request(line)
            except RequestError as exc:
                await self.send(error_reply(exc.code, exc.message))
                continue
            # Commands that change something are worth the journal; monitoring polls are not.
            level = logging.DEBUG if request.command in READ_ONLY else logging.INFO
            log.log(level, "control: uid %s: %s", self.peer.uid, request)
            if isinstance(request, EventsRequest):
                if self.slots.followers >= self.limits.max_followers:
                    self.slots.refusals.warning(
                        "control: %d event followers, refusing uid %s", self.slots.followers, self.peer.uid
                    )
                    busy = f"too many event followers (max {self.limits.max_followers})"
                    await self.send(error_reply(ErrorCode.BUSY, busy))
                    return  # closing frees the slot now: kept open, it would hold the one reserved for commands
                await self.follow_events()
                return
            await self.send(await self.run_command(request))
            idle_since = anyio.current_time()
            deadline = idle_since + self.limits.request_timeout

    async def run_command(self, request: CommandRequest) -> bytes:
        cmd = request.command
        try:
            with anyio.fail_after(self.limits.command_timeout):
                return ok_reply(await self.handler.execute(request, self.peer))
        except TimeoutError:
            log.warning("control: %s did not finish in %g s", cmd, self.limits.command_timeout)
            return error_reply(ErrorCode.TIMEOUT, f"{cmd} did not finish in {self.limits.command_timeout:g} s")
        except ControlError as exc:  # the app refusing a well-formed request (e.g. no such button)
            return error_reply(ErrorCode.REFUSED, str(exc))
        except IntercomError as exc:
            log.warning("control: %s failed: %s", cmd, exc)
            return error_reply(ErrorCode.FAILED, str(exc))
        except Exception as exc:  # a bug in the app must not take the control socket down with it
            log.exception("control: %s raised", cmd)
            return error_reply(ErrorCode.FAILED, f"{type(exc).__name__}: {exc}")

    async def follow_events(self) -> None:
        """Stream events until the client leaves, falls behind, or the source ends; then close."""
        self.slots.followers += 1
        try:
            queue, pending = anyio.create_memory_object_stream[dict[str, object]](self.limits.follower_queue)
            async with anyio.create_task_group() as tg, pending:
                try:
                    await tg.start(self._pump, queue)
                except Exception as exc:
                    log.exception("control: subscribing to events failed")
                    await self.send_quietly(error_reply(ErrorCode.FAILED, f"event stream: {type(exc).__name__}: {exc}"))
                    return
                log.debug("control: uid %s following events", self.peer.uid)  # subscribed: tests wait for this line
                await self.send(ok_reply("streaming"))
                # The source may stay silent for hours: watch the client too, so a disconnect frees the slot now
                # rather than at the next event.
                tg.start_soon(self._cancel_on_disconnect, tg.cancel_scope)
                async for event in pending:
                    await self.send(event_line(event))
                code, message = self.stream_end
                await self.send_quietly(error_reply(code, message))
                tg.cancel_scope.cancel()
        finally:
            self.slots.followers -= 1

    async def _pump(
        self,
        queue: MemoryObjectSendStream[dict[str, object]],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Events from the app into this follower's bounded queue; never waits on the client."""
        with queue:
            async with self.handler.events() as source:
                task_status.started()
                async for event in source:
                    try:
                        queue.send_nowait(event)
                    except anyio.WouldBlock:
                        behind = f"fell {self.limits.follower_queue} events behind and was disconnected"
                        log.warning("control: event follower uid %s %s", self.peer.uid, behind)
                        self.stream_end = (ErrorCode.TOO_SLOW, behind)
                        return  # leaving closes the subscription now and ends the writer's queue

    async def _cancel_on_disconnect(self, scope: anyio.CancelScope) -> None:
        with suppress(*DISCONNECTS):
            while await self.sock.receive():  # anything a follower sends is ignored; waiting for EOF is the point
                pass
        scope.cancel()


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
    raw, inode = await anyio.to_thread.run_sync(claim_socket, path)
    listener = LineSocket(raw)
    slots = _Slots(limits)
    log.info("control: listening on %s", path)

    async def client(sock: LineSocket) -> None:
        with closing(sock):
            conn = _Connection(sock, handler, limits, slots)
            if not slots.admit(conn):
                slots.refusals.warning("control: %d clients connected, refusing uid %s", slots.clients, conn.peer.uid)
                await conn.send_quietly(error_reply(ErrorCode.BUSY, f"too many clients (max {limits.max_clients})"))
                return
            try:
                await conn.serve()
            except Exception as exc:  # one broken connection must never stop the listener
                if is_disconnect(exc):
                    log.debug("control: uid %s dropped: %r", conn.peer.uid, exc)
                else:
                    log.exception("control: connection from uid %s failed", conn.peer.uid)
            finally:
                slots.release(conn)

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
                    tg.start_soon(client, LineSocket(peer))
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(unlink_own_socket, path, inode)
