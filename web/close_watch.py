"""Noticing at once that a streaming client went away, instead of at the next write.

After a clean close (FIN) the next write to the socket still succeeds, so a silent stream
would notice a vanished client only after a heartbeat or two. Instead, a read watcher on the
gevent loop (no greenlet, a few hundred bytes per stream) fires when the socket turns
readable. A stream never reads its request's connection again, so whatever the client sends
after its request (a stray byte, a pipelined request) is read and discarded there, and the
watch goes on: reading the end of the data (FIN, also after a half-close) or a reset means
the client has gone. A client that keeps sending more than MAX_DISCARD bytes is let go too.
"""
from __future__ import annotations

import _socket
import logging
import socket

logger = logging.getLogger(__name__)

_READ = 1
MAX_DISCARD = 65536
_SCRATCH = bytearray(4096)      # the hub runs one callback at a time: one buffer for all


def _noop():
    return None


def _drain(fd: int) -> tuple[bool, int]:
    """Read and discard what is waiting: (the peer closed or reset, bytes discarded)."""
    raw = _socket.socket(fileno=fd)      # the C socket: never waits on the gevent hub
    read = 0
    try:
        while read <= MAX_DISCARD:
            n = raw.recv_into(_SCRATCH, len(_SCRATCH), socket.MSG_DONTWAIT)
            if n == 0:
                return True, read
            read += n
        return False, read
    except BlockingIOError:
        return False, read               # nothing more (or a spurious wake-up)
    except OSError:
        return True, read                # reset: gone as well
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
    discarded = 0

    def ready():
        nonlocal discarded
        gone, read = _drain(fd)
        discarded += read
        if gone or discarded > MAX_DISCARD:
            watcher.stop()
            if not gone:
                logger.info("a client sent %d bytes after its request: letting it go", discarded)
            on_gone()

    watcher.start(ready)
    return watcher.close
