"""Noticing at once that a streaming client went away, instead of at the next write.

After a clean close (FIN) the next write to the socket still succeeds, so a silent stream
would notice a vanished client only after a heartbeat or two. Instead, a read watcher on the
gevent loop (no greenlet, a few hundred bytes per stream) fires when the socket turns
readable; a peek that reads nothing means the peer has closed.
"""
from __future__ import annotations

import _socket
import logging
import socket

logger = logging.getLogger(__name__)

_READ = 1
_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


def _noop():
    return None


def _closed(fd: int) -> bool | None:
    """True if the peer closed, False if it sent data, None if nothing is there after all."""
    raw = _socket.socket(fileno=fd)      # the C socket: never waits on the gevent hub
    try:
        return raw.recv(1, _PEEK) == b""
    except BlockingIOError:
        return None
    except OSError:
        return True                      # reset: gone as well
    finally:
        raw.detach()


def watch(environ, on_gone):
    """Call `on_gone()` once when the client closes its end; returns a function to stop watching."""
    sock = environ.get("gunicorn.socket")
    try:
        from gevent import get_hub
    except ImportError:
        return _noop
    if sock is None:
        return _noop
    fd = sock.fileno()
    watcher = get_hub().loop.io(fd, _READ)

    def ready():
        state = _closed(fd)
        if state is None:
            return                       # spurious wake-up: keep watching
        watcher.stop()
        if state:
            on_gone()

    watcher.start(ready)
    return watcher.close
