"""Which registrar the panel uses: the first of an ordered list that is registered and answering.

Every registrar in ``[sip.account] registrars`` has its own pjsua account, registered all the time (a hot
standby): failing over is then only a change of which account places the calls, with no REGISTER round trip
on the visit's path. A registrar is passed over when its registration fails (REGISTER timeout, 408, 503,
401...) or when it has answered nothing, neither a REGISTER nor a probe (an OPTIONS over UDP, a connect over
TCP/TLS), for ``failover_seconds``
(pjsip alone notices a dead registrar only at the next refresh, and then after a 32 s transaction timeout).
When a silent registrar answers again it is re-registered (a restarted registrar forgot the binding), and it is
used again once that REGISTER succeeds.

Pure bookkeeping and a UDP prober, no pjsua2: the owner thread feeds it registration callbacks and probe
answers, and asks it which account dials a URI.
"""

from __future__ import annotations

import errno
import functools
import logging
import random
import select
import socket
from dataclasses import dataclass, replace

from daemon.sip._uri import DEFAULT_PORT, SipUri, SipUriError
from daemon.sip.types import RegistrationFailure, RegistrationSnapshot

__all__ = ["RegisterReply", "RegistrarBook", "RegistrarProbe", "RegistrarState"]

log = logging.getLogger("daemon.sip._pj_owner")  # the owner thread's logger: one place for SIP status lines

# Probes per failover period: one lost datagram must not pass a healthy registrar over.
_PROBES_PER_PERIOD = 3
_TLS_PORT = 5061
# REGISTER failures that mean "nobody answered": a registrar's (or a proxy's) own 408/503/504, and the failures
# pjsip makes up (a timeout, a local transport error). After one of these a probe's answer re-registers at once;
# after a refusal (401, 403) pjsua's retry interval decides, so wrong credentials are not hammered into a PBX's
# lock-out.
_UNREACHABLE = (408, 503, 504)
_NOT_ANSWERED = (RegistrationFailure.NO_ANSWER, RegistrationFailure.TRANSPORT)
# What pjsip reports, with no response received, for a transaction that timed out and one whose transport failed
# (PJSIP_SC_TSX_TIMEOUT, PJSIP_SC_TSX_TRANSPORT_ERROR).
_TSX_TIMEOUT, _TSX_TRANSPORT_ERROR = 408, 503


@dataclass(frozen=True)
class RegisterReply:
    """What pjsua reported for one REGISTER: ``status`` is pjsip's own (non-zero: it could not be sent),
    ``code``/``reason`` the SIP status line, ``responded`` whether a SIP response was received at all."""

    status: int
    code: int
    reason: str
    responded: bool

    def classify(self, active: bool) -> tuple[int, str, RegistrationFailure]:
        """(code, reason, failure). A local transport error is not a SIP status: pjsip reports it as "503 <the
        error's text>" ("503 Invalid argument" from a socket that cannot reach the registrar's address), which
        read as the registrar's own 503; it becomes code 0, "transport error: ...", failure TRANSPORT."""
        if active:
            return self.code, self.reason, RegistrationFailure.NONE
        refused = RegistrationFailure.REFUSED if self.code >= 300 else RegistrationFailure.NONE  # 200: unregistered
        if self.responded:  # a status of pjsip's own here is about the answer (a 401 it has no credential for)
            return self.code, self.reason, refused
        if self.code == _TSX_TIMEOUT:
            return self.code, self.reason, RegistrationFailure.NO_ANSWER
        if self.status != 0 or self.code == _TSX_TRANSPORT_ERROR:
            return 0, f"transport error: {self.reason}", RegistrationFailure.TRANSPORT
        return self.code, self.reason, refused


@dataclass
class RegistrarState:
    uri: str
    target: SipUri | None  # None when the URI does not parse (refused by the configuration check anyway)
    last_answer: float  # monotonic time of its last answer (a probe's or a REGISTER's), or of the start
    registered: bool = False
    probed: bool = False  # OPTIONS probes go to it (UDP, its name resolved): only then can it fall silent
    silent: bool = False  # passed over: nothing answered for failover_seconds
    reregistered_at: float = float("-inf")  # when the probe last made it register again
    code: int = 0
    reason: str = "not registered"
    expires: int = 0
    failure: RegistrationFailure = RegistrationFailure.NONE

    @property
    def usable(self) -> bool:
        return self.registered and not self.silent

    @property
    def unreachable(self) -> bool:
        """Its last REGISTER failed for want of an answer (timeout, transport error): not a refusal."""
        return not self.registered and (self.failure in _NOT_ANSWERED or self.code in _UNREACHABLE)


def _hostport(uri: SipUri) -> tuple[str, int]:
    return uri.host, uri.port or DEFAULT_PORT


class RegistrarBook:
    """The state of each registrar, in order of preference, and the routing of dials through them."""

    def __init__(self, uris: tuple[str, ...], failover_seconds: float, now: float) -> None:
        self.failover_seconds = failover_seconds
        self.states = [RegistrarState(uri, _parse(uri), now) for uri in uris]

    @property
    def active(self) -> int | None:
        """The index of the registrar calls go through: the first usable one, or None."""
        return next((i for i, s in enumerate(self.states) if s.usable), None)

    def on_registration(
        self,
        index: int,
        active: bool,
        code: int,
        reason: str,
        expires: int,
        *,
        now: float,
        failure: RegistrationFailure = RegistrationFailure.NONE,
    ) -> None:
        state = self.states[index]
        state.registered, state.code, state.reason, state.expires = active, code, reason, expires
        state.failure = failure
        if active:  # it answered: a registration that succeeds is proof of life
            state.last_answer, state.silent = now, False

    def on_answer(self, index: int, now: float) -> bool:
        """A probe was answered. True when it should register again now: it had been passed over (a restarted
        registrar forgot the binding), or its last REGISTER went unanswered (an outage that ended: pjsua alone
        would wait for its retry interval). At most once per failover period."""
        state = self.states[index]
        state.last_answer = now
        was_silent, state.silent = state.silent, False
        if not (was_silent or state.unreachable) or now - state.reregistered_at < self.failover_seconds:
            return False
        state.reregistered_at = now
        return True

    def check(self, now: float) -> list[int]:
        """Probed registrars that just went silent for failover_seconds: they are passed over from now on.
        (One that is not probed answers only at its refreshes, minutes apart: its registration state decides.)"""
        gone: list[int] = []
        if len(self.states) < 2:  # nothing to fail over to: the registration's own state decides
            return gone
        for i, state in enumerate(self.states):
            if state.probed and not state.silent and now - state.last_answer > self.failover_seconds:
                state.silent, state.registered = True, False  # a registrar that comes back may have lost it
                state.code, state.reason = 408, f"no answer for {self.failover_seconds:g} s"
                state.failure = RegistrationFailure.NO_ANSWER
                gone.append(i)
        return gone

    def route(self, uri: str) -> tuple[int, str]:
        """(account index, URI to dial) for ``uri``. A URI at a registrar's address (host and port) is dialled
        at the active registrar's address instead; any other URI (a resident's direct IP) is dialled as it is,
        whether a registrar is up or not."""
        active = self.active
        index = 0 if active is None else active
        target = _parse(uri)
        at_registrar = target is not None and any(
            s.target is not None and _hostport(s.target) == _hostport(target) for s in self.states
        )
        via = self.states[index].target if active is not None else None
        if target is None or not at_registrar or via is None:
            return index, uri
        return index, str(replace(target, host=via.host, port=via.port))

    def snapshot(self, about: int | None = None) -> RegistrationSnapshot:
        """The panel's registration: the active registrar's, or (none active) registrar ``about``'s or the first's."""
        if not self.states:
            return RegistrationSnapshot(False, False, 0, "not registered", 0)
        active = self.active
        index = active if active is not None else (about or 0)
        s = self.states[index]
        return RegistrationSnapshot(True, active is not None, s.code, s.reason, s.expires, s.uri, s.failure)


@functools.lru_cache(maxsize=64)
def _parse(uri: str) -> SipUri | None:
    # Cached (a frozen value per text): every dial routes its URI on the owner thread just before makeCall, and the
    # same few residents are dialled again and again.
    try:
        return SipUri.parse(uri)
    except SipUriError:
        return None


class RegistrarProbe:
    """Probes each registrar every ``failover_seconds`` / 3 from sockets of its own, sent and read without
    blocking on the owner thread's turn (no thread, no loop task). Over UDP an OPTIONS, and any SIP response
    counts as an answer (a 404 or 483 still proves the registrar is up); over TCP/TLS a connection accepted on
    its port counts (closed at once; no TLS handshake: the listener's being there is what is asked)."""

    def __init__(self, book: RegistrarBook, bind_address: str, transport: str) -> None:
        self._book = book
        self._stream = transport != "udp"
        self._bind = bind_address if bind_address not in ("", "0.0.0.0") else "0.0.0.0"
        self._targets: dict[tuple[str, int], int] = {}
        self._pending: dict[socket.socket, tuple[int, float]] = {}  # TCP connects in flight: (index, sent at)
        self._next_probe = 0.0
        self._period = max(0.2, book.failover_seconds / _PROBES_PER_PERIOD)
        self._socket: socket.socket | None = None
        kind = socket.SOCK_STREAM if self._stream else socket.SOCK_DGRAM
        for i, state in enumerate(book.states):
            if state.target is None:
                continue
            host = state.target.host
            secure = transport == "tls" or state.target.scheme == "sips"
            port = state.target.port or (_TLS_PORT if secure else DEFAULT_PORT)
            try:  # once, at start: a registrar's name is resolved here as pjsua resolves it for REGISTER
                address = socket.getaddrinfo(host, port, socket.AF_INET, kind)[0][4]
            except OSError as exc:
                log.warning("sip: registrar %s: %s does not resolve (%s); not probed", state.uri, host, exc)
                continue
            self._targets[(str(address[0]), int(address[1]))] = i
            state.probed = True
        if self._targets and not self._stream:
            self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._socket.setblocking(False)
            self._socket.bind((self._bind, 0))

    def next_due(self, now: float) -> float | None:
        """When :meth:`turn` next has work: the next probe, or soon while TCP connects are in flight."""
        if not self._targets:
            return None
        return min(self._next_probe, now + 0.02) if self._pending else self._next_probe

    def turn(self, now: float) -> list[int]:
        """Send the probes that are due and read the answers; returns the registrars that came back."""
        if not self._targets:
            return []
        answered = self._stream_answers(now) if self._stream else self._datagram_answers()
        back = [i for i in answered if self._book.on_answer(i, now)]
        if now >= self._next_probe:
            self._next_probe = now + self._period
            for address, index in self._targets.items():
                try:
                    self._send(address, index, now)
                except OSError as exc:  # no route (interface down): the registrar stays silent
                    log.debug("sip: probe to %s: %s", self._book.states[index].uri, exc)
        return back

    def _datagram_answers(self) -> list[int]:
        assert self._socket is not None
        answered: list[int] = []
        while True:
            try:
                data, source = self._socket.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                return answered
            except OSError:  # an ICMP error queued on the socket: the next read goes on
                continue
            index = self._targets.get((str(source[0]), int(source[1])))
            if index is not None and data.startswith(b"SIP/2.0 "):
                answered.append(index)

    def _stream_answers(self, now: float) -> list[int]:
        answered: list[int] = []
        if not self._pending:
            return answered
        _, done, _ = select.select([], list(self._pending), [], 0)
        for sock in list(self._pending):
            index, sent = self._pending[sock]
            if sock in done and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                answered.append(index)
            elif sock not in done and now - sent < self._period:
                continue  # still connecting
            del self._pending[sock]
            sock.close()
        return answered

    def _send(self, address: tuple[str, int], index: int, now: float) -> None:
        if not self._stream:
            assert self._socket is not None
            self._socket.sendto(_options(self._book.states[index].uri, self._socket.getsockname()), address)
            return
        if any(i == index for i, _ in self._pending.values()):
            return  # the last connect is still pending
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.bind((self._bind, 0))
            error = sock.connect_ex(address)
        except OSError:
            sock.close()
            raise
        if error in (0, errno.EINPROGRESS):
            self._pending[sock] = (index, now)
        else:  # refused at once: nobody listens there
            sock.close()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        for sock in self._pending:
            sock.close()
        self._pending.clear()


def _options(uri: str, local: tuple[str, int]) -> bytes:
    host, port = local
    return (
        f"OPTIONS {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{random.getrandbits(48):x};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:probe@{host}>;tag={random.getrandbits(32):x}\r\nTo: <{uri}>\r\n"
        f"Call-ID: {random.getrandbits(64):x}@{host}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()
