"""What of pjsip's own log reaches Python ``logging``, at which level, and how often. Pure: no pjsua2.

pjsip writes its log through a ``pjsua2.LogWriter`` (``_pj_log.PjLogWriter``) that hands every line to
:meth:`PjsipLogRouter.route`. Rules, each for a reason (docs/pjsua2.md, "Log routing"):

* Only a line's first line is kept, cut to :data:`MAX_CHARS`: pjsip appends whole packets to some lines
  ("Error processing packet ... :\\n<packet>\\n-- end of packet."), and a packet can carry a SIP INFO DTMF body
  (``Signal=4``) or an ``Authorization`` header. Redaction below is a second fence, not the first.
* Levels: pjsip 0-1 (errors) -> ERROR, 2 (warnings) -> WARNING, 3 and more -> DEBUG (our own SIP logger
  already reports calls and registrations at INFO; pjsip's level-3 lines are its internals).
* Anyone who can send a datagram can make pjsip log (a malformed packet is one error line each): at most
  :data:`BUDGET` lines per :data:`WINDOW_S` seconds pass; the rest are counted and reported in one WARNING
  line once the window is over (on the next line or the owner's next :meth:`flush`).

pjsip calls the writer from its own threads; this class only touches ``logging`` (thread-safe) and its
own counters under a lock, never the event loop.
"""

from __future__ import annotations

import logging
import re

from daemon.sip._log_budget import LogBudget

__all__ = ["BUDGET", "MAX_CHARS", "WINDOW_S", "PjsipLogRouter", "clean_line", "python_level"]

BUDGET = 20
WINDOW_S = 10.0
MAX_CHARS = 240

_SECRETS = [
    # Credentials: whatever follows these words is never logged.
    (re.compile(r"((?:Proxy-)?Authorization\s*:).*", re.I), r"\1 <redacted>"),
    (re.compile(r"(Signal\s*=\s*)\S+", re.I), r"\1*"),
    (re.compile(r"(password\W{0,3})\S+", re.I), r"\1<redacted>"),
]
_MENTIONS_DTMF = re.compile(r"dtmf|digit", re.I)
# In a line about DTMF, every standalone run of DTMF symbols goes ("Received DTMF digit 4, vol=10", "dialing
# DTMF 4711"); call numbers go with them, which costs nothing. Case-sensitive: "a"-"d" are not digits.
_DTMF_SYMBOLS = re.compile(r"(?<![\w.:=])[0-9A-D*#]+(?![\w.]|:\d)")  # not inside an address or a port


def python_level(pj_level: int) -> int:
    if pj_level <= 1:
        return logging.ERROR
    if pj_level == 2:
        return logging.WARNING
    return logging.DEBUG


def clean_line(message: str) -> str:
    """The first line of a pjsip log message, without its timestamp padding, cut short and redacted."""
    line = message.split("\n", 1)[0].strip()
    for pattern, replacement in _SECRETS:
        line = pattern.sub(replacement, line)
    if _MENTIONS_DTMF.search(line):
        line = _DTMF_SYMBOLS.sub("*", line)
    return line if len(line) <= MAX_CHARS else line[:MAX_CHARS] + "..."


class PjsipLogRouter:
    """Routes pjsip's log lines into ``logger`` within a budget per window."""

    def __init__(self, logger: logging.Logger, budget: int = BUDGET, window: float = WINDOW_S) -> None:
        self._budget = LogBudget(logger, "pjsip log lines (a flood of bad packets?)", budget, window)

    @property
    def suppressed_total(self) -> int:
        return self._budget.suppressed_total

    def route(self, pj_level: int, message: str, now: float) -> None:
        self._budget.log(now, python_level(pj_level), "pjsip: %s", _Cleaned(message))

    def flush(self, now: float) -> None:
        """Report the lines dropped in a window that is over (called by the owner thread every turn)."""
        self._budget.flush(now)


class _Cleaned:
    """Cleans a pjsip line only if it is formatted: a line nobody keeps costs no regex."""

    def __init__(self, message: str) -> None:
        self._message = message

    def __str__(self) -> str:
        return clean_line(self._message)
