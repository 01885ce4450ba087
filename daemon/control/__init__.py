"""The control socket: a line-delimited JSON protocol over a Unix socket, for ``intercomctl`` and scripts.

- :mod:`~daemon.control.protocol`: the request schema, parsing a request line, the reply format (no I/O);
- :mod:`~daemon.control.server`: the socket, who may hold a connection and for how long;
- :mod:`~daemon.control.adapter`: :class:`AppControl`, each request mapped onto :class:`daemon.facade.AppFacade`;
- :mod:`~daemon.control.client`: ``intercomctl``.

The app starts it with ``await tg.start(serve_control, path, AppControl(app))``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daemon.control.adapter import AppControl
    from daemon.control.server import ControlLimits, serve_control

__all__ = ["AppControl", "ControlLimits", "serve_control"]

# Imported on first use: intercomctl loads daemon.control.client, which needs neither the server nor anyio
# (about a third of its start-up time on x86, more on a Pi).
_HOMES = {
    "AppControl": "daemon.control.adapter",
    "ControlLimits": "daemon.control.server",
    "serve_control": "daemon.control.server",
}


def __getattr__(name: str) -> object:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
