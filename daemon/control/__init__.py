"""The control socket: a line-delimited JSON protocol over a Unix socket, for ``intercomctl`` and scripts.

- :mod:`~daemon.control.protocol`: the request schema, parsing a request line, the reply format (no I/O);
- :mod:`~daemon.control.server`: the socket, who may hold a connection and for how long;
- :mod:`~daemon.control.adapter`: :class:`AppControl`, each request mapped onto :class:`daemon.facade.AppFacade`;
- :mod:`~daemon.control.client`: ``intercomctl``.

The app starts it with ``await tg.start(serve_control, path, AppControl(app))``.
"""

from daemon.control.adapter import AppControl
from daemon.control.server import ControlLimits, serve_control

__all__ = ["AppControl", "ControlLimits", "serve_control"]
