"""Noticing at once that a streaming client went away, instead of at the next write.

After a clean close (FIN) the next write to the socket still succeeds, so a silent stream
would notice a vanished client only after a heartbeat or two. One small greenlet per stream
waits until the socket turns readable and peeks: an empty read means the peer has closed.
"""
from __future__ import annotations

import logging
import socket

logger = logging.getLogger(__name__)


def watch(environ, on_gone):
    """Call `on_gone()` when the client closes its end; returns a function that stops watching."""
    sock = environ.get("gunicorn.socket")
    try:
        import gevent
        from gevent.socket import wait_read
    except ImportError:
        return lambda: None
    if sock is None:
        return lambda: None

    def run():
        try:
            wait_read(sock.fileno())
            if sock.recv(1, socket.MSG_PEEK) != b"":
                return          # the client sent something (a pipelined request): not a close
        except (OSError, ValueError):
            pass                # reset or already closed: gone as well
        on_gone()

    greenlet = gevent.spawn(run)
    return lambda: greenlet.kill(block=False)
