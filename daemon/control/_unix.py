"""The Unix socket underneath the control server: the socket file, and line I/O on a non-blocking socket.

No policy here (who may connect, for how long): that is :mod:`daemon.control.server`.
"""

from __future__ import annotations

import logging
import socket
import stat
import struct
from pathlib import Path

import anyio
import anyio.lowlevel

from daemon.control.protocol import Peer
from daemon.errors import ControlError

__all__ = ["DISCONNECTS", "LineSocket", "TooLarge", "claim_socket", "is_disconnect", "unlink_own_socket"]

log = logging.getLogger("daemon.control.server")  # one logger for the whole server, as operators filter on it


class TooLarge(Exception):
    """A line longer than the caller's limit."""


class LineSocket:
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

    def peer(self) -> Peer:
        """Who connected (SO_PEERCRED): logged with each command, and named as who opened the door."""
        try:
            creds = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except OSError:
            return Peer(None)
        pid, uid, _gid = struct.unpack("3i", creds)
        return Peer(uid, pid)

    async def receive(self) -> bytes:
        """Some bytes, or b"" at end of stream."""
        await anyio.lowlevel.checkpoint()  # a client flooding us must not starve the rest of the loop
        while True:
            try:
                return self.sock.recv(65536)
            except BlockingIOError:
                await anyio.wait_readable(self.sock)

    async def receive_line(self, limit: int) -> bytes | None:
        """The next line without its newline; None at end of stream. Raises TooLarge past ``limit`` bytes."""
        while True:
            end = self.buffer.find(b"\n")
            if end > limit or (end < 0 and len(self.buffer) > limit):
                raise TooLarge
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


DISCONNECTS = (TimeoutError, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


def is_disconnect(exc: BaseException) -> bool:
    """A client going away or too slow: expected, logged at debug. Task groups wrap it in a group."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_disconnect(e) for e in exc.exceptions)
    return isinstance(exc, DISCONNECTS)


def claim_socket(path: Path) -> tuple[socket.socket, int]:
    """Bind and listen at ``path``: the socket and the file's inode. Blocking: run in a worker thread.

    A socket left by a crash is removed; a live daemon answering there is refused, not displaced.
    """
    # Outside systemd nothing made the runtime directory: make it private to the daemon's user.
    try:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    except OSError as exc:
        raise ControlError(f"paths.runtime_dir: cannot create {path.parent}: {exc.strerror or exc}") from exc
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


def unlink_own_socket(path: Path, inode: int) -> None:
    # Only remove the file if it is still ours: another daemon may have bound the path since.
    try:
        if path.lstat().st_ino == inode:
            path.unlink()
    except OSError:
        pass
