"""The management API's server: servicer, bearer auth, grpc.health.v1 and reflection, over
TLS when GRPC_TLS_CERT_FILE is set.

build_server(settings, gateway) -> ManagementServer (not started); start_server(settings,
gateway) builds, binds and starts it (OSError when the address cannot be bound);
start_management(settings, gateway) -> Management, what the service (service/main.py) uses:
off at GRPC_PORT=0, else it keeps retrying a busy port (after a SIGHUP the old worker holds
it for a moment; with several workers one holds it and the others stand by).

How it shares the gevent worker with the streams and the actors
----------------------------------------------------------------
Chosen: grpcio's own gevent mode. start_server runs from post_worker_init, where the worker is
already monkey-patched and its hub runs on the main thread, and calls
`grpc.experimental.gevent.init_gevent()` there, once, before the first grpc object. Then:
- grpcio's server loop (`_serve`, started with `threading.Thread`) and the handlers (in a
  `futures.ThreadPoolExecutor`) are greenlets on the hub's thread, because the patch made
  `threading` cooperative. A handler can therefore ask a Pykka actor (a gevent queue) exactly
  as a Flask view does: same thread, same hub, no locks.
- The one blocking call of that loop, `completion_queue_next`, is run by grpcio in gevent's
  native thread pool (a real OS thread, GIL released) and its result handed to the hub, so
  the hub never waits on gRPC; the HTTP/2 socket I/O stays in gRPC core's own C threads.
- rpc/gevent_mode.py takes each of a call's wake-ups (that result, the handler's start, its
  wait for the request) ahead of the hub's callback queue, where a reconnect storm queues
  thousands of opening streams: behind a 0.6 s backlog a call took 0.6 s with grpcio's own
  gevent mode and 45 ms with these (tests/unit/test_gevent_mode.py).

Rejected:
- grpcio without init_gevent: `_serve` is a greenlet all the same and blocks the whole hub in
  `completion_queue_next` (server.start() alone freezes every stream).
- the server on a real, unpatched thread: grpcio creates its threads with the (patched)
  `threading` module, so they cannot be made real without unpatching; and every handler would
  still have to carry its ask over to the hub and back (gevent queues are not thread-safe)
  and then wait for the same busy hub -- more code, no faster answers.

Measured by tests/e2e/test_grpc_load.py (300 streams, 100 events/s = 30k deliveries/s, two
shared cores): GetStats p50 10-30 ms, p99 50-150 ms; GET /stats in the same window p50 8-20 ms,
p99 20-60 ms. Both wait for the hub, busy writing to 300 sockets; gRPC's tail is longer by
the hand-over of each completion from the native thread (which needs the GIL) to the hub.
Idle: p50 ~2 ms. A smaller sys.setswitchinterval did not change this measurably.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import threading
import time

import grpc
from grpc_reflection.v1alpha import reflection

from actors.gateway import Gateway
from rpc import sse_pb2, sse_pb2_grpc
from rpc.auth import BearerAuth
from rpc.decoding import RequestDecoding
from rpc.gevent_mode import executor, init_gevent
from rpc.health import KafkaHealth
from rpc.servicer import ManagementServicer
from rpc.streams import StreamCap

logger = logging.getLogger(__name__)

SERVICE_NAME = sse_pb2.DESCRIPTOR.services_by_name["SSEManagementService"].full_name
HEALTH_SERVICE_NAME = "grpc.health.v1.Health"
HANDLER_THREADS = 8
MAX_STREAMS = 4        # open Watch and reflection streams: the other handlers stay free
OPERATOR_STREAMS = 2   # more of them for calls with GRPC_AUTH_TOKEN (grpcurl's reflection)
IDLE_CONNECTION_MS = 300_000  # a connection with no call that long is closed (GOAWAY)
# Each connection is a file descriptor of the worker, the streams' and Kafka's too: more are
# closed at once, and one that has not begun HTTP/2 within HANDSHAKE_MS gives its place back.
MAX_CONNECTIONS = 100
HANDSHAKE_MS = 10_000
# grpc takes 4 MB requests by default, held whole before any handler (or the token check)
# runs; the management requests are a few hundred bytes.
MAX_MESSAGE_BYTES = 64 * 1024


class ManagementServer:
    """A grpc.Server with its health reporter; stop() turns health NOT_SERVING first."""

    def __init__(self, server: grpc.Server, health: KafkaHealth, address: str, port: int):
        self.server, self.health, self.address, self.port = server, health, address, port

    def start(self) -> "ManagementServer":
        self.server.start()
        self.health.refresh()
        self.health.start()
        return self

    def stop(self, grace: float | None = None):
        self.health.stop()
        return self.server.stop(grace)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def build_server(settings, gateway: Gateway, *,
                 max_workers: int = HANDLER_THREADS) -> ManagementServer:
    """Everything wired, bound, not started. Raises OSError when the address cannot be bound."""
    auth = BearerAuth(settings.grpc_auth_token) if settings.grpc_auth_token else None
    cap = StreamCap(MAX_STREAMS, trusted=auth.carries_token if auth else None,
                    reserved=OPERATOR_STREAMS)
    interceptors = [cap, *([auth] if auth else []), RequestDecoding()]   # innermost: after auth
    server = grpc.server(executor(max_workers),
                         interceptors=interceptors,
                         # Fail loudly on a port in use instead of sharing it with another
                         # process (gRPC sets SO_REUSEPORT by default).
                         options=[("grpc.so_reuseport", 0),
                                  ("grpc.max_connection_idle_ms", IDLE_CONNECTION_MS),
                                  ("grpc.max_allowed_incoming_connections", MAX_CONNECTIONS),
                                  ("grpc.server_handshake_timeout_ms", HANDSHAKE_MS),
                                  ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
    sse_pb2_grpc.add_SSEManagementServiceServicer_to_server(ManagementServicer(gateway), server)
    health = KafkaHealth(gateway)
    from grpc_health.v1 import health_pb2_grpc
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = _address(settings.grpc_host, settings.grpc_port)
    try:
        credentials = _credentials(settings)
        port = (server.add_secure_port(address, credentials) if credentials
                else server.add_insecure_port(address))
    except OSError as exc:           # a TLS file that went away since the settings were read
        port, problem = 0, f"cannot read the TLS files of {address}: {exc}"
    except RuntimeError as exc:      # grpcio raises RuntimeError("Failed to bind ...")
        port, problem = 0, f"cannot listen on {address}: {exc}"
    else:
        problem = f"cannot listen on {address}"
    if not port:
        server.stop(None)
        raise OSError(problem)
    return ManagementServer(server, health, address, port)


def _credentials(settings) -> grpc.ServerCredentials | None:
    """TLS with GRPC_TLS_CERT_FILE and its key (the settings checked that they fit), asking
    for a client certificate issued by GRPC_TLS_CLIENT_CA_FILE when set; None: plaintext."""
    if not settings.grpc_tls_cert_file:
        return None
    with open(settings.grpc_tls_key_file, "rb") as key, \
            open(settings.grpc_tls_cert_file, "rb") as chain:
        pair = (key.read(), chain.read())
    if not settings.grpc_tls_client_ca_file:
        return grpc.ssl_server_credentials([pair])
    with open(settings.grpc_tls_client_ca_file, "rb") as ca:
        return grpc.ssl_server_credentials([pair], root_certificates=ca.read(),
                                           require_client_auth=True)


def start_server(settings, gateway: Gateway) -> ManagementServer:
    """Build, bind and start, saying where it listens; OSError when the address cannot be
    bound (Management retries)."""
    mode = "gevent" if init_gevent() else "threads"
    server = build_server(settings, gateway).start()
    tls = " with TLS" if settings.grpc_tls_cert_file else ""
    if settings.grpc_tls_client_ca_file:
        tls += ", client certificates required"
    logger.info("management API (gRPC) listening on %s%s: %s, health, reflection (%s)",
                server.address, tls, SERVICE_NAME, mode)
    if not settings.grpc_auth_token and not settings.grpc_tls_client_ca_file:
        logger.warning("GRPC_AUTH_TOKEN is not set: the management API on %s is "
                       "unauthenticated; anyone who reaches it can list and disconnect clients",
                       server.address)
    return server


class Management:
    """The worker's management API: listening now, or as soon as its port is free.

    On SIGHUP gunicorn starts the new worker while the old one still holds the port (it lets
    go when it starts stopping, see service/main.py). So a port in use is not final here:
    the bind is retried every RETRY_SECONDS, backing off to RETRY_MAX_SECONDS, until it
    succeeds or stop() is called; meanwhile the streams are served as usual.

    With several workers (`standby=True`) one of them holds the port and serves the instance;
    the others stand by quietly, retrying every STANDBY_SECONDS, and one takes over when the
    holder stops or dies. `bind_lock` (a file of the instance directory) makes their check
    that the port is free and their bind one step: two workers starting together would both
    find it free, and the loser's bind would make gRPC write an error line of its own.
    """

    RETRY_SECONDS = 0.2
    RETRY_MAX_SECONDS = 5.0
    STANDBY_SECONDS = 0.5
    COMPLAIN_EVERY_SECONDS = 60.0
    TURN_WAIT_SECONDS = 5.0

    def __init__(self, settings, gateway: Gateway, *, standby: bool = False, may_take=None,
                 bind_lock: str | None = None):
        self.settings, self.gateway, self.standby = settings, gateway, standby
        self.may_take = may_take or (lambda: True)     # False: this worker is stopping too
        self.bind_lock = bind_lock
        self.server: ManagementServer | None = None
        self._stopped = threading.Event()
        self._retrying: threading.Thread | None = None

    def start(self) -> "Management":
        host, port = self.settings.grpc_host, self.settings.grpc_port
        if not port:
            logger.info("management API (gRPC) is off (GRPC_PORT=0)")
            return self
        if not host.strip("[]"):
            logger.error("management API (gRPC) not started: GRPC_HOST is empty; set the "
                         "address to listen on (127.0.0.1, the default, or 0.0.0.0 for all)")
            return self
        try:
            server = self._bind()
            if server is None:
                raise OSError("port in use")
            self.server = server
        except OSError as exc:
            if not port_taken(host, port):
                logger.error("%s; retrying", _cannot_listen(self.settings, exc))
            elif self.standby:
                logger.info("management API (gRPC): port %s is taken (by another worker of "
                            "this instance, else by another process); standing by to take it "
                            "over", port)
            else:
                logger.warning("management API (gRPC) %s; retrying until it is free (after a "
                               "reload the previous worker holds it until it stops)", exc)
            self._retrying = threading.Thread(target=self._retry, name="grpc-bind-retry",
                                              daemon=True)
            self._retrying.start()
        return self

    def _retry(self) -> None:
        started = last_complaint = time.monotonic()     # start() said why already
        delay = self.STANDBY_SECONDS if self.standby else self.RETRY_SECONDS
        while not self._stopped.wait(delay):
            if self.standby and not self.may_take():
                continue
            try:
                server = self._bind()
            except OSError as exc:
                busy = port_taken(self.settings.grpc_host, self.settings.grpc_port)
                if self.standby and busy:
                    continue
                if time.monotonic() - last_complaint >= self.COMPLAIN_EVERY_SECONDS:
                    why = ("is another process using GRPC_PORT?" if busy
                           else _cannot_listen(self.settings, exc))
                    logger.error("management API (gRPC) still not started after %.0f s: %s; "
                                 "%s", time.monotonic() - started, exc, why)
                    last_complaint = time.monotonic()
                delay = min(delay * 1.5, self.RETRY_MAX_SECONDS)
                continue
            if server is None:
                continue                # taken: quietly, gRPC logs every bind it fails
            if self._stopped.is_set():
                server.stop(None)
                return
            self.server = server
            if self.standby:
                logger.info("management API (gRPC) on %s: took over once the port was free "
                            "(standing by for %.1f s)", server.address,
                            time.monotonic() - started)
            else:       # at the level of start()'s warning
                logger.warning("management API (gRPC) bound %s after %.1f s of retries",
                               server.address, time.monotonic() - started)
            return

    def _bind(self) -> ManagementServer | None:
        """The server, bound and started; None when a standby finds the port taken."""
        with _turn(self.bind_lock, self.TURN_WAIT_SECONDS):
            if self.standby and port_taken(self.settings.grpc_host, self.settings.grpc_port):
                return None
            return start_server(self.settings, self.gateway)

    def stop(self, grace: float | None = None):
        """Idempotent. Stops listening at once; calls in flight get `grace` seconds."""
        self._stopped.set()
        retrying, self._retrying = self._retrying, None
        if retrying is not None:
            retrying.join(2.0)          # a bind in progress finishes, then sees the stop
        server, self.server = self.server, None
        return server.stop(grace) if server is not None else None


@contextlib.contextmanager
def _turn(path: str | None, wait: float):
    """This process's turn among those locking `path` (none without one). Never blocks the
    worker's hub: the lock is tried every 10 ms, and after `wait` seconds the caller goes on
    without it (at worst gRPC then logs a failed bind)."""
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)                    # lets go of the lock


def _cannot_listen(settings, exc: OSError) -> str:
    """A bind that failed while nothing holds the port: the address is the problem."""
    return (f"management API (gRPC) cannot listen on GRPC_HOST={settings.grpc_host!r} "
            f"(port {settings.grpc_port} is free: {exc}); set an address of this machine "
            "(127.0.0.1, the default, or 0.0.0.0 for all)")


def port_taken(host: str, port: int) -> bool:
    """Something listens on host:port (a plain bind tried and given back at once)."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host.strip("[]"), port,
                                                         type=socket.SOCK_STREAM)[0]
    except OSError:
        return False                    # let gRPC say what is wrong with the address
    probe = socket.socket(family, kind)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
    except OSError as exc:
        return exc.errno == errno.EADDRINUSE
    finally:
        probe.close()
    return False


def start_management(settings, gateway: Gateway, *, standby: bool = False,
                     may_take=None, bind_lock: str | None = None) -> Management:
    """The management API of this worker; see Management (never raises for a busy port).
    `may_take()`: whether a standby may take the port over now (not while it stops)."""
    return Management(settings, gateway, standby=standby, may_take=may_take,
                      bind_lock=bind_lock).start()
