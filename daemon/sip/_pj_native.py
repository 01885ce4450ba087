"""The two pjsip C functions pjsua2 does not wrap and the engine needs, called through ``ctypes`` on the
SIP owner thread (the ``_pj_*`` modules are the only ones touching pjsua2).

Why: an outgoing INVITE hung up before any final response keeps its pjsua call slot until pjsip's INVITE
transaction ends: when the far end sent nothing, Timer B (64 x T1 = 32 s); when it rang but never answers
the CANCEL, pjsip's own 64 x T1 timeout. Measured: 4 such calls (the wheel's 4 slots) made every dial
fail with PJ_ETOOMANY for 32 s. pjsua2 offers no way to end a transaction sooner, and T1 is not settable
through it. ``pjsip_tsx_layer_find_tsx2`` finds the INVITE's transaction by its key (``c$`` + Via branch)
and returns NULL once pjsip has destroyed it, so a stale branch is harmless; ``pjsip_tsx_terminate`` ends
it with a status, and pjsua then frees the slot as after any final response.

Safe only on the owner thread: with ``threadCnt=0`` this thread alone polls pjsip's sockets and timers,
so the transaction found cannot be destroyed between the lookup and the termination.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

import pjsua2 as pj

__all__ = ["NativePjsip"]

log = logging.getLogger("daemon.sip._pj_owner")  # one logger name for the owner thread's messages


class _PjStr(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_char_p), ("slen", ctypes.c_ssize_t)]


class NativePjsip:
    """The loaded pjsua2 library's pjsip functions; :attr:`available` is False when it exports none (a
    build with hidden symbols): slots are then freed by pjsip's own timers only."""

    def __init__(self) -> None:
        self._find: Any = None
        self._terminate: Any = None
        module = getattr(pj, "_pjsua2", None)
        path = getattr(module, "__file__", None)
        try:
            # dlopen of the already-loaded extension: its own symbols, or (a shared source build) those of
            # the libpjsip it links, which dlsym searches through the handle's dependencies.
            lib = ctypes.CDLL(path)
            find, terminate = lib.pjsip_tsx_layer_find_tsx2, lib.pjsip_tsx_terminate
        except (OSError, AttributeError, TypeError) as exc:
            log.warning(
                "sip: pjsip's transaction functions are not reachable (%s); a call cancelled before "
                "any answer keeps its call slot up to 32 s",
                exc,
            )
            return
        find.argtypes, find.restype = [ctypes.POINTER(_PjStr), ctypes.c_int], ctypes.c_void_p
        terminate.argtypes, terminate.restype = [ctypes.c_void_p, ctypes.c_int], ctypes.c_int
        self._find, self._terminate = find, terminate

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
