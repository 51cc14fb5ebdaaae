"""Noticing at once that a streaming client went away, instead of at the next write.

After a clean close (FIN) the next write to the socket still succeeds, so a silent stream
would notice a vanished client only after a heartbeat or two. Instead, a read watcher on the
gevent loop (no greenlet, a few hundred bytes per stream) fires when the socket turns
readable. A stream never reads its request's connection again, so whatever the client sends
after its request (a stray byte, a pipelined request) is read and discarded there, and the
watch goes on: reading the end of the data (FIN, also after a half-close) or a reset means
the client has gone. A client that keeps sending more than MAX_DISCARD bytes is let go too.
A connection the kernel ended because what was sent stayed unacknowledged past its
TCP_USER_TIMEOUT (web/worker.py) is told apart: its client stopped reading (a shut window) or
its link died.
"""
from __future__ import annotations

import _socket
import errno
import logging
import socket

logger = logging.getLogger(__name__)

_READ = 1
MAX_DISCARD = 65536
GONE = "client went away"
UNACKNOWLEDGED = ("client not reading or unreachable: nothing acknowledged within "
                  "TCP_USER_TIMEOUT (twice SSE_HEARTBEAT_SECONDS, at least 10 s)")
TOO_MUCH = f"client sent over {MAX_DISCARD} bytes after its request"
_SCRATCH = bytearray(4096)      # the hub runs one callback at a time: one buffer for all


def _noop():
    return None


# what a read or write meets once the kernel gave up on unacknowledged data: ETIMEDOUT, or
# the soft error it met meanwhile (a vanished peer's address no longer resolves)
_UNACKNOWLEDGED_ERRORS = frozenset({errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH,
                                    errno.EHOSTDOWN})


def gone_reason(error: OSError | None = None) -> str:
    """Why a connection ended, from the error its last read or write met (None: closed)."""
    return (UNACKNOWLEDGED if error is not None and error.errno in _UNACKNOWLEDGED_ERRORS
            else GONE)


def _drain(fd: int) -> tuple[str | None, int]:
    """Read and discard what is waiting: (why the peer is gone, or None; bytes discarded)."""
    raw = _socket.socket(fileno=fd)      # the C socket: never waits on the gevent hub
    read = 0
    try:
        while read <= MAX_DISCARD:
            n = raw.recv_into(_SCRATCH, len(_SCRATCH), socket.MSG_DONTWAIT)
            if n == 0:
                return GONE, read
            read += n
        return None, read
    except BlockingIOError:
        return None, read                # nothing more (or a spurious wake-up)
    except OSError as error:
        return gone_reason(error), read  # reset, or nothing acknowledged (ETIMEDOUT)
    finally:
        raw.detach()


def watch(environ, on_gone):
    """Call `on_gone(reason)` once when the client closes its end; returns a function to stop
    watching."""
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
            on_gone(gone or TOO_MUCH)

    watcher.start(ready)
    return watcher.close
