"""The workers of one instance, each reaching the others over a private Unix socket.

    <instance dir>/peers/<pid>.sock     one per worker, created when its actors run
                                        (PeerServer), removed when it stops

One question per connection, in plain sockets (no gRPC: its hand-offs between a native
thread and the hub cost more than the question under load): the asker sends one frame
`{"method", "args", "deadline"}` as JSON (the deadline in time.monotonic() seconds, one clock
for every process of the machine: a question that waited past it is dropped unanswered), the
worker answers one frame, a status byte then its LOCAL gateway's reply as JSON
(rpc/peer_codec.py: every figure of /stats and /health), and closes. A frame is a 4-byte
big-endian length and that many bytes. No token: the instance directory is mode 0700.
Written with `socket` and `threading`, which the gevent worker has made cooperative: in a
worker every wait here is a greenlet's, on the hub. Nothing waits past the deadline: not a
connect (a stuck worker's full queue is an answer), not a reply that trickles in.

Peers is the client actors/instance.py's InstanceGateway asks: `ask(method, *args, timeout)`
sends the question to every other worker's socket at once and returns a function that
collects PeerAnswer(peer, value, silent). A socket whose connect is refused (its worker
died: SIGKILL leaves the file) is skipped and its file removed; a worker that answers that it
is stopping (its streams are closing) is skipped too; a worker replaced by gunicorn joins by
creating its own socket.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import socket
import struct
import threading
import time
from typing import NamedTuple

from actors.gateway import STOPPING, Gateway, Unavailable
from rpc import peer_codec

logger = logging.getLogger(__name__)

PEERS = "peers"
SUFFIX = ".sock"
JOINING = ".joining"      # a socket not listening yet: no peer asks it (not SUFFIX)
METHODS = ("stats", "health", "clients", "disconnect", "disconnect_subject")
ANSWER, LEAVING, UNAVAILABLE, REFUSED = b"A", b"L", b"U", b"R"     # a reply's status byte
MAX_QUESTION = 64 * 1024
MAX_REPLY = 256 * 1024 * 1024        # a GetClients page deep in 100k clients
READ_QUESTION_S = 5.0                # an asker that connects and says nothing is dropped
LISTEN_BACKLOG = 256
ACCEPT_RETRY_S = 0.05                # after a failed accept (out of file descriptors)
COMPLAIN_EVERY_S = 60.0
_LENGTH = struct.Struct(">I")


def socket_path(instance_dir: str, pid: int | None = None) -> str:
    return os.path.join(instance_dir, PEERS, f"{pid or os.getpid()}{SUFFIX}")


# -- the wire -----------------------------------------------------------------------------------
def _send_frame(sock: socket.socket, payload: bytes, deadline: float) -> None:
    sock.settimeout(_left(deadline))
    sock.sendall(_LENGTH.pack(len(payload)) + payload)


def _read_length(sock: socket.socket, deadline: float) -> int:
    (length,) = _LENGTH.unpack(_read_exactly(sock, _LENGTH.size, deadline))
    return length


def _read_frame(sock: socket.socket, limit: int, deadline: float) -> bytes:
    """One frame by `deadline`; EOFError when the other side closed first, ValueError when
    too large, socket.timeout past the deadline (however slowly the bytes trickle in)."""
    length = _read_length(sock, deadline)
    if length > limit:
        raise ValueError(f"a frame of {length} bytes (at most {limit})")
    return _read_exactly(sock, length, deadline)


def _read_exactly(sock: socket.socket, size: int, deadline: float) -> bytes:
    chunks, left = [], size
    while left:
        sock.settimeout(_left(deadline))
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("the connection closed mid-frame")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise socket.timeout("past the deadline")
    return left


# -- serving this worker ---------------------------------------------------------------------
def answer(gateway: Gateway, question: bytes) -> bytes | None:
    """The reply (status byte + body) of `gateway` to one question frame; None when the
    question's deadline passed before it was read (nobody waits for the answer any more)."""
    try:
        asked = json.loads(question)
        method, args, deadline = asked["method"], list(asked["args"]), float(asked["deadline"])
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        return REFUSED + f"unreadable question: {exc}"[:200].encode()
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    try:
        return ANSWER + peer_codec.encode(getattr(gateway, method)(*args, timeout=left))
    except Unavailable as exc:
        leaving = str(exc) == STOPPING            # its streams are closing: not a stuck worker
        return (LEAVING if leaving else UNAVAILABLE) + str(exc).encode()
    except Exception as exc:  # noqa: BLE001 - a bad question or a bug: said, never a crash
        logger.error("worker %d could not answer a peer's %s: %s: %s", os.getpid(), method,
                     type(exc).__name__, exc, exc_info=not isinstance(exc, TypeError))
        return REFUSED + f"{type(exc).__name__}: {exc}"[:200].encode()


class PeerServer:
    """This worker's socket in the instance directory; stop() closes and removes it."""

    def __init__(self, gateway: Gateway, path: str):
        self.gateway, self.path = gateway, path
        self.listener: socket.socket | None = None

    def start(self) -> "PeerServer":
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        _unlink(self.path)                      # a dead worker's file with our pid
        # Bound under another name, listening, then named: a peer asking between bind() and
        # listen() was refused, took this worker for a dead one and removed its file.
        joining = self.path + JOINING
        _unlink(joining)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(joining)
            listener.listen(LISTEN_BACKLOG)
            os.replace(joining, self.path)
        except OSError:
            listener.close()
            _unlink(joining)
            raise
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="peer-server",
                         daemon=True).start()
        logger.info("worker %d joined the instance on %s", os.getpid(), self.path)
        return self

    def _accept(self, listener: socket.socket) -> None:
        complained = 0.0
        while True:
            try:
                connection, _ = listener.accept()
            except OSError as exc:
                if self.listener is None or listener.fileno() < 0:
                    return                      # stop() closed it
                if time.monotonic() - complained >= COMPLAIN_EVERY_S:   # EMFILE, ENOBUFS...
                    logger.warning("worker %d cannot take a peer's question: %s; retrying",
                                   os.getpid(), exc)
                    complained = time.monotonic()
                time.sleep(ACCEPT_RETRY_S)
                continue
            threading.Thread(target=self._serve, args=(connection,), name="peer-question",
                             daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            try:
                arrived = time.monotonic() + READ_QUESTION_S
                length = _read_length(connection, arrived)
                if length > MAX_QUESTION:
                    reply = REFUSED + f"a question of {length} bytes".encode()
                    _send_frame(connection, reply, time.monotonic() + READ_QUESTION_S)
                    return
                answered = answer(self.gateway, _read_exactly(connection, length, arrived))
                if answered is not None:    # the asker waits at most READ_QUESTION_S for it
                    _send_frame(connection, answered, time.monotonic() + READ_QUESTION_S)
            except (OSError, EOFError, ValueError, struct.error):
                pass                            # the asker gave up or went away

    def stop(self) -> None:
        """Idempotent: the others stop asking this worker at once (the file goes first); a
        question being answered still gets its answer."""
        listener, self.listener = self.listener, None
        if listener is not None:
            _unlink(self.path)
            try:
                listener.shutdown(socket.SHUT_RDWR)     # wakes a thread blocked in accept()
            except OSError:
                pass
            listener.close()


# -- asking the others ----------------------------------------------------------------------
class PeerAnswer(NamedTuple):
    peer: str                       # "worker <pid>"
    value: object = None
    silent: str | None = None       # why it did not answer in time (None: it answered)


class Peers:
    """The other workers' sockets in `<instance_dir>/peers`, looked up on every question."""

    def __init__(self, instance_dir: str, own_path: str | None = None):
        self.directory = os.path.join(instance_dir, PEERS)
        self.own_path = own_path or socket_path(instance_dir)

    def paths(self) -> list[str]:
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            names = []
        except OSError as exc:          # EMFILE: a partial answer would look whole
            raise Unavailable(f"cannot look the other workers up ({exc.strerror or exc}); "
                              "retry shortly") from None
        paths = [os.path.join(self.directory, name) for name in names if name.endswith(SUFFIX)]
        return [path for path in paths if path != self.own_path]

    def ask(self, method: str, *args, timeout: float):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}")
        deadline = time.monotonic() + timeout
        question = json.dumps({"method": method, "args": args, "deadline": deadline}).encode()
        calls = [(path, self._send(path, question, deadline)) for path in self.paths()]

        def collect() -> list[PeerAnswer]:
            answers = []
            try:
                for path, sent in calls:
                    answer = (self._answer(method, path, sent, deadline)
                              if isinstance(sent, socket.socket) else sent)
                    if answer is not None:
                        answers.append(answer)
            finally:
                for _path, sent in calls:
                    if isinstance(sent, socket.socket):
                        sent.close()
            return answers
        return collect

    @staticmethod
    def _send(path: str, question: bytes, deadline: float) -> socket.socket | PeerAnswer | None:
        """The connection that carries `question` to `path`; None when its worker is gone, a
        silent PeerAnswer when it cannot take the question now. Never waits to connect: a
        stuck worker's full backlog (EAGAIN) is an answer, not a wait."""
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as exc:          # EMFILE: this worker is out of file descriptors
            return PeerAnswer(_name(path), silent=f"not asked ({exc.strerror or exc})")
        sock.setblocking(False)
        status = sock.connect_ex(path)
        if status in (errno.ECONNREFUSED, errno.ENOENT):
            sock.close()
            _forget_dead(path)
            return None
        if status != 0:
            sock.close()
            reason = ("not taking questions (its connection queue is full)"
                      if status in (errno.EAGAIN, errno.EWOULDBLOCK) else os.strerror(status))
            return PeerAnswer(_name(path), silent=reason)
        try:
            _send_frame(sock, question, deadline)
            return sock
        except OSError as exc:
            sock.close()
            if _gone(path):              # it left between the connect and the question
                _forget_dead(path)
                return None
            reason = ("no answer within the deadline" if isinstance(exc, socket.timeout)
                      else f"no answer ({type(exc).__name__}: {exc})")
            return PeerAnswer(_name(path), silent=reason)

    def _answer(self, method: str, path: str, sock: socket.socket,
                deadline: float) -> PeerAnswer | None:
        peer = _name(path)
        try:
            reply = _read_frame(sock, MAX_REPLY, deadline)
        except (socket.timeout, BlockingIOError):
            return PeerAnswer(peer, silent="no answer within the deadline")
        except (OSError, EOFError, ValueError, struct.error) as exc:
            if _gone(path):             # it died (SIGKILL leaves the file) or just left
                _forget_dead(path)
                return None
            return PeerAnswer(peer, silent=f"no answer ({type(exc).__name__}: {exc})")
        status, body = reply[:1], reply[1:]
        if status == LEAVING:           # stopping (SIGTERM, reload): it holds nothing for long
            return None
        if status == UNAVAILABLE:
            return PeerAnswer(peer, silent=f"UNAVAILABLE: {body.decode(errors='replace')}")
        if status != ANSWER:
            return PeerAnswer(peer, silent=f"refused: {body.decode(errors='replace')}")
        return read_answer(peer, method, body)


def read_answer(peer: str, method: str, body: bytes) -> PeerAnswer:
    """A peer's answer to `method`, or its silence when the reply cannot be read (a wrong
    shape, a nesting too deep to decode)."""
    try:
        return PeerAnswer(peer, peer_codec.decode(method, body))
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        return PeerAnswer(peer, silent=f"unreadable reply: {str(exc)[:200]}")


def _name(path: str) -> str:
    return f"worker {os.path.basename(path)[:-len(SUFFIX)]}"


def _forget_dead(path: str) -> None:
    """Said once per dead worker: the question that removes its socket says it."""
    if _unlink_if_same(path):
        logger.info("%s is gone: forgetting %s", _name(path), path)


def _gone(path: str) -> bool:
    """Nobody listens on `path` any more (connect refused or the file is gone). Never waits:
    a stuck worker's full backlog (EAGAIN) is not a dead worker."""
    try:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError:                     # out of file descriptors: not known to be gone
        return False
    probe.setblocking(False)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return True
    except OSError as exc:
        return exc.errno in (errno.ECONNREFUSED, errno.ENOENT)
    finally:
        probe.close()
    return False


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _unlink_if_same(path: str) -> bool:
    """Remove a dead worker's socket, unless a new one was created there meanwhile; True when
    this call removed it."""
    try:
        before = os.stat(path).st_ino
        if _gone(path) and os.stat(path).st_ino == before:
            os.unlink(path)
            return True
    except FileNotFoundError:
        pass
    return False
