"""The few pjsip/pjlib C functions pjsua2 does not wrap and the engine needs, called through ``ctypes`` on
the SIP owner thread (the ``_pj_*`` modules are the only ones touching pjsua2).

Ending an INVITE transaction early. Why: an outgoing INVITE hung up before any final response keeps its pjsua call
slot until pjsip's INVITE transaction ends: when the far end sent nothing, Timer B (64 x T1 = 32 s); when it rang
but never answers the CANCEL, pjsip's own 64 x T1 timeout. Measured: 4 such calls (the wheel's 4 slots) made every
dial fail with PJ_ETOOMANY for 32 s. pjsua2 offers no way to end a transaction sooner, and T1 is not settable
through it. ``pjsip_tsx_layer_find_tsx2`` finds the INVITE's transaction by its key (``c$`` + Via branch) and
returns NULL once pjsip has destroyed it, so a stale branch is harmless; ``pjsip_tsx_terminate`` ends it with a
status, and pjsua then frees the slot as after any final response.

Safe only on the owner thread: with ``threadCnt=0`` this thread alone polls pjsip's sockets and timers,
so the transaction found cannot be destroyed between the lookup and the termination.

Telling inbound TCP/TLS connections, and whether anything uses them (``_inbound_tcp`` says why): a
``pjsua2`` TransportHandle is the address of a ``pjsip_transport``, whose first member is its object name
(``char obj_name[PJ_MAX_OBJ_NAME]``, 32): "tcps..."/"tlss..." for a connection pjsip accepted,
"tcpc..."/"tlsc..." for one it opened (sip_transport_tcp.c:650, sip_transport_tls.c:882). Next come a pool
pointer and the ``pj_atomic_t *ref_cnt`` read with ``pj_atomic_get`` (sip_transport.h:837-842, 2.15.1).
Only read for a handle reported CONNECTED and not yet reported shut down or destroyed.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

import pjsua2 as pj

__all__ = ["NativePjsip"]

_PJ_MAX_OBJ_NAME = 32
_INBOUND_NAMES = (b"tcps", b"tlss")

log = logging.getLogger("daemon.sip._pj_owner")  # one logger name for the owner thread's messages


class _PjStr(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_char_p), ("slen", ctypes.c_ssize_t)]


class NativePjsip:
    """The loaded pjsua2 library's pjsip functions; :attr:`available` is False when it exports none (a
    build with hidden symbols): slots are then freed by pjsip's own timers only."""

    def __init__(self) -> None:
        self._find: Any = None
        self._terminate: Any = None
        self._atomic_get: Any = None
        self._call_count: Any = None
        module = getattr(pj, "_pjsua2", None)
        path = getattr(module, "__file__", None)
        try:
            # dlopen of the already-loaded extension: its own symbols, or (a shared source build) those of
            # the libpjsip it links, which dlsym searches through the handle's dependencies.
            lib = ctypes.CDLL(path)
            find, terminate = lib.pjsip_tsx_layer_find_tsx2, lib.pjsip_tsx_terminate
            atomic_get = lib.pj_atomic_get
        except (OSError, AttributeError, TypeError) as exc:
            log.warning(
                "sip: pjsip's transaction functions are not reachable (%s); a call cancelled before any answer "
                "keeps its call slot up to 32 s, and idle inbound TCP connections are not reaped",
                exc,
            )
            return
        find.argtypes, find.restype = [ctypes.POINTER(_PjStr), ctypes.c_int], ctypes.c_void_p
        terminate.argtypes, terminate.restype = [ctypes.c_void_p, ctypes.c_int], ctypes.c_int
        atomic_get.argtypes, atomic_get.restype = [ctypes.c_void_p], ctypes.c_long
        self._find, self._terminate, self._atomic_get = find, terminate, atomic_get
        call_count = getattr(lib, "pjsua_call_get_count", None)
        if call_count is not None:
            call_count.argtypes, call_count.restype = [], ctypes.c_uint
            self._call_count = call_count

    def calls_in_use(self) -> int | None:
        """pjsua's call slots in use (``pjsua_call_get_count``), None when the function is not reachable. A
        cancelled call pjsua reported DISCONNECTED can still hold one: see the module's note."""
        return None if self._call_count is None else int(self._call_count())

    @property
    def available(self) -> bool:
        return self._find is not None

    def end_invite_transaction(self, branch: str, status: int = 408) -> bool:
        """End our INVITE transaction with Via ``branch`` now, as if ``status`` had arrived. False when
        pjsip no longer has it (the far end answered after all) or the functions are unavailable."""
        if self._find is None:
            return False
        raw = f"c${branch}".encode()
        key = _PjStr(raw, len(raw))
        tsx = self._find(ctypes.byref(key), 0)  # no reference taken: see the module's note on threads
        if not tsx:
            return False
        return int(self._terminate(tsx, status)) == 0

    def is_inbound_stream(self, transport: int) -> bool:
        """Is this live transport a TCP/TLS connection pjsip accepted (not one the panel opened)?"""
        return self._atomic_get is not None and ctypes.string_at(transport, 4) in _INBOUND_NAMES

    def references(self, transport: int) -> int:
        """pjsip's reference count of this live transport: 0 when no transaction, dialog or call uses it."""
        ref_cnt = ctypes.c_void_p.from_address(transport + _PJ_MAX_OBJ_NAME + ctypes.sizeof(ctypes.c_void_p))
        return int(self._atomic_get(ref_cnt.value))
