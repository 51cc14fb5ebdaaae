"""The workers of one instance, each reaching the others over a private Unix socket.

    <instance dir>/peers/<pid>.sock     one per worker, created when its actors run
                                        (PeerServer), removed when it stops

PeerServer serves, on that socket, this worker's LOCAL gateway twice: the public
sse.SSEManagementService (so `grpcurl -unix -plaintext <sock>` inspects one worker) and the
private PEER_SERVICE, whose calls carry the gateway's own replies as JSON (rpc/peer_codec.py):
every figure of /stats and /health, which the public messages do not all carry. No token: the
instance directory is mode 0700.

Peers is the client actors/instance.py's InstanceGateway asks: `ask(method, *args, timeout)`
starts the call on every other worker's socket at once (gRPC futures) and returns a function
that collects PeerAnswer(peer, value, silent). A socket whose connect is refused (its worker
died: SIGKILL leaves the file) is skipped and its file removed; a worker that answers that it
is stopping (its streams are closing) is skipped too; a worker replaced by gunicorn joins by
creating its own socket. Everything here runs after grpc.experimental.gevent.init_gevent()
(rpc/server.py, see RUNTIME-NOTES).
"""
from __future__ import annotations

import errno
import json
import logging
import os
import socket
from concurrent import futures
from typing import NamedTuple

import grpc

from actors.gateway import STOPPING, Gateway, Unavailable
from rpc import peer_codec, sse_pb2_grpc
from rpc.server import init_gevent
from rpc.servicer import ManagementServicer

logger = logging.getLogger(__name__)

PEERS = "peers"
SUFFIX = ".sock"
PEER_SERVICE = "sse.peer.Worker"
METHODS = {"stats": "Stats", "health": "Health", "clients": "Clients",
           "disconnect": "Disconnect", "disconnect_subject": "DisconnectSubject"}
LEAVING = grpc.StatusCode.FAILED_PRECONDITION      # the peer's answer: "I am stopping"
MAX_MESSAGE = 256 * 1024 * 1024      # a GetClients page deep in 100k clients
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE),
                   ("grpc.max_send_message_length", MAX_MESSAGE)]


def socket_path(instance_dir: str, pid: int | None = None) -> str:
    return os.path.join(instance_dir, PEERS, f"{pid or os.getpid()}{SUFFIX}")


# -- serving this worker ---------------------------------------------------------------------
def _handler(gateway: Gateway, method: str):
    def handle(request: bytes, context):
        args = json.loads(request or b"[]")
        try:
            answer = getattr(gateway, method)(*args, timeout=context.time_remaining())
            return peer_codec.encode(answer)
        except Unavailable as exc:
            leaving = str(exc) == STOPPING        # its streams are closing: not a stuck worker
            context.abort(LEAVING if leaving else grpc.StatusCode.UNAVAILABLE, str(exc))
    return grpc.unary_unary_rpc_method_handler(handle)     # bytes in, bytes out


def peer_handler(gateway: Gateway) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        PEER_SERVICE, {name: _handler(gateway, method) for method, name in METHODS.items()})


class PeerServer:
    """This worker's socket in the instance directory; stop() closes and removes it."""

    def __init__(self, gateway: Gateway, path: str, *, max_workers: int = 4):
        self.gateway, self.path = gateway, path
        self.server: grpc.Server | None = None
        self.max_workers = max_workers

    def start(self) -> "PeerServer":
        init_gevent()
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        _unlink(self.path)                      # a dead worker's file with our pid
        server = grpc.server(futures.ThreadPoolExecutor(self.max_workers,
                                                        thread_name_prefix="grpc-peer"),
                             options=CHANNEL_OPTIONS)
        sse_pb2_grpc.add_SSEManagementServiceServicer_to_server(
            ManagementServicer(self.gateway), server)
        server.add_generic_rpc_handlers((peer_handler(self.gateway),))
        if not server.add_insecure_port(f"unix:{self.path}"):
            server.stop(None)
            raise OSError(f"cannot listen on {self.path}")
        server.start()
        self.server = server
        logger.info("worker %d joined the instance on %s", os.getpid(), self.path)
        return self

    def stop(self, grace: float | None = None) -> None:
        """Idempotent: the others stop asking this worker at once (the file goes first)."""
        server, self.server = self.server, None
        if server is not None:
            _unlink(self.path)
            server.stop(grace)


# -- asking the others ----------------------------------------------------------------------
class PeerAnswer(NamedTuple):
    peer: str                       # "worker <pid>"
    value: object = None
    silent: str | None = None       # why it did not answer in time (None: it answered)


class Peers:
    """The other workers' sockets in `<instance_dir>/peers`, looked up on every question."""

    def __init__(self, instance_dir: str, own_path: str | None = None):
        init_gevent()
        self.directory = os.path.join(instance_dir, PEERS)
        self.own_path = own_path or socket_path(instance_dir)
        self._channels: dict[str, grpc.Channel] = {}

    def paths(self) -> list[str]:
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            names = []
        paths = [os.path.join(self.directory, name) for name in names if name.endswith(SUFFIX)]
        return [path for path in paths if path != self.own_path]

    def ask(self, method: str, *args, timeout: float):
        payload = json.dumps(args).encode()
        name = f"/{PEER_SERVICE}/{METHODS[method]}"
        paths = self.paths()
        self._forget(set(self._channels) - set(paths))
        calls = [(path, self._call(path, name, payload, timeout)) for path in paths]

        def collect() -> list[PeerAnswer]:
            answers = []
            for path, call in calls:
                answer = self._answer(method, path, call) if call is not None else None
                if answer is not None:
                    answers.append(answer)
            return answers
        return collect

    def _call(self, path: str, name: str, payload: bytes, timeout: float):
        try:
            return self._channel(path).unary_unary(name).future(payload, timeout=timeout)
        except ValueError:              # its channel was just closed: the worker is gone
            return None

    def _answer(self, method: str, path: str, call) -> PeerAnswer | None:
        peer = f"worker {os.path.basename(path)[:-len(SUFFIX)]}"
        try:
            return PeerAnswer(peer, peer_codec.decode(method, call.result()))
        except grpc.RpcError as exc:
            code = exc.code()
            if code == LEAVING:         # stopping (SIGTERM, reload): it holds nothing for long
                return None
            if _gone(path):             # it died (SIGKILL leaves the file) or just left
                logger.info("%s is gone: forgetting %s", peer, path)
                self._forget({path})
                _unlink_if_same(path)
                return None
            detail = ("no answer within the deadline" if code == grpc.StatusCode.DEADLINE_EXCEEDED
                      else f"{code.name}: {exc.details()}")
            return PeerAnswer(peer, silent=detail)
        except grpc.FutureCancelledError:     # its channel was closed: the worker is gone
            return None
        except (ValueError, KeyError, TypeError) as exc:     # a reply we cannot read
            return PeerAnswer(peer, silent=f"unreadable reply: {exc}")

    def _channel(self, path: str) -> grpc.Channel:
        channel = self._channels.get(path)
        if channel is None:
            channel = self._channels[path] = grpc.insecure_channel(f"unix:{path}",
                                                                   options=CHANNEL_OPTIONS)
        return channel

    def _forget(self, paths) -> None:
        for path in paths:
            channel = self._channels.pop(path, None)
            if channel is not None:
                channel.close()

    def close(self) -> None:
        self._forget(list(self._channels))


def _gone(path: str) -> bool:
    """Nobody listens on `path` any more (connect refused or the file is gone). Never waits:
    a stuck worker's full backlog (EAGAIN) is not a dead worker."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
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


def _unlink_if_same(path: str) -> None:
    """Remove a dead worker's socket, unless a new one was created there meanwhile."""
    try:
        before = os.stat(path).st_ino
        if _gone(path) and os.stat(path).st_ino == before:
            os.unlink(path)
    except FileNotFoundError:
        pass
