"""gunicorn's gevent worker with a door for half-sent requests (`worker_class`: WORKER_CLASS
in web/serve.py).

Why: gunicorn's gevent worker reads a request head with no time limit, and every accepted
connection holds a slot of its pool (`worker_connections`) until it ends. ~1,200 connections
that send half a request line fill the pool; the worker then stops accepting, and every
client -- /health from anywhere included -- waits in the listen backlog.

What this worker adds (bookkeeping in web/door.py):
- a request head not complete within HTTP_HEADER_TIMEOUT_SECONDS is answered 408 and closed;
- one address may hold HTTP_MAX_PENDING_PER_IP such connections; past it, 429 and close
  (trusted proxies are not counted per address);
- the worker holds HTTP_MAX_PENDING at most; past it the oldest is closed without an answer
  (a browser's EventSource retries that, where a 408 would end it for good), and the pool
  has room for them on top of `worker_connections`, so they never take the streams' slots.
One sweeper greenlet enforces every deadline: no timer per connection, and no gevent.Timeout
that could ever be raised inside the application or an actor.

And each worker takes up to ACCEPT_BURST connections per turn of its loop. gunicorn's gevent
worker takes one when there are several workers (to spread them); a worker busy delivering
events turns its loop a few dozen times a second, so in a reconnect storm the kernel's listen
queue overflowed and clients waited for SYN retries (bench: 230 new streams/s with 2 workers,
2,466/s with one). Both workers are woken for each burst, so they still share it. 500 rather
than gevent's 100: since live delivery is woken ahead of the hub's callbacks
(actors/prompt.py), the loop turns less often in a storm, and at 100 per turn 5,000 streams at
once overflowed the listen queue again (187-303 drops in three of four storm-only runs; none
in five at 500, though the full bench's storms, run after the matrix, still drop 333-403).

gunicorn's own answers to requests it cannot parse (400, 414, 431 ...) are JSON like ours
(`write_json_error`), not its HTML page.

A request head may hold MAX_HEAD_BYTES in all (`bound_request_heads`). gunicorn alone takes
100 fields of 8,190 bytes, 785 KB, and scans all it has read again at each 8 KiB read: 147 ms
of CPU for such a head, holding the worker's hub (four senders took every stream's p50
latency from 17 ms to 1.2 s). Past the bound: 431, like a field over 8,190 bytes.

Two costs of every request are paid once instead: gunicorn's settings are read as plain
attributes (`freeze_settings`), and the Date header is formatted once a second (`per_second`).

The master imports this module (to find the class) before any patching: keep its imports to
gunicorn, gevent (as gunicorn's own gevent worker does) and pure modules.
"""
from __future__ import annotations

import errno
import json
import logging
from http import HTTPStatus
import os
import re
import resource
import socket
import time
import weakref

import gevent
from gevent.server import StreamServer
from gunicorn import util as gunicorn_util
from gunicorn.http import message as gunicorn_message, parser as gunicorn_parser
from gunicorn.workers import ggevent
from gunicorn.workers.ggevent import GeventWorker

from actors.logs import LogBudget, more_since, report_unlogged
from web import clocks
from web.door import Door, DoorLimits
from web.gunicorn_log import redact_words

logger = logging.getLogger(__name__)

SWEEP_SECONDS = 0.25
REPORT_SECONDS = 60.0
UNACKED_MIN_S = 10          # the least TCP_USER_TIMEOUT, for links that stall a few seconds
ACCEPT_BURST = 500          # connections one worker accepts per turn of its loop
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)   # accept() fails: the process's, the system's
STOP_GRACE_SECONDS = 1.0    # a stopping worker waits this long for request heads on their way
MAX_HEAD_BYTES = 64 * 1024  # a whole request head (Authorization, Cookie, Last-Event-ID: 8 KB each)


class BurstServer(StreamServer):
    """gevent's StreamServer whose max_accept stays ACCEPT_BURST (see the module docstring).
    `running` holds this process's servers, so that a stopping worker stops accepting at once
    (GatewayWorker.handle_exit) rather than within gunicorn's next second."""

    running: "weakref.WeakSet[BurstServer]" = weakref.WeakSet()
    starved_log = LogBudget(1, REPORT_SECONDS)     # this process's, whichever listener

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        BurstServer.running.add(self)
        self.starved_since: float | None = None   # the first failed accept not yet recovered from
        self.said = False                          # ... and a warning about it was logged
        self.pause = self.min_delay

    def do_read(self):
        """gevent's accept, but out of descriptors (ulimit -n reached) it pauses accepting
        itself: said in one line a minute at most, and once when it accepts again after each
        such line, where gevent printed a traceback to stderr on each try (no level, not
        JSON)."""
        try:
            accepted = super().do_read()
        except OSError as exc:
            if exc.errno not in OUT_OF_DESCRIPTORS:
                raise
            self._starved(exc)
            return None
        if accepted and self.starved_since is not None:
            self.pause = self.min_delay
            if self.said:       # paired with the warning: at the limit, it comes and goes
                logger.warning("accepting connections on %s again (%.1f s after the first that "
                               "failed)", _address(self.address),
                               time.monotonic() - self.starved_since)
                self.starved_since, self.said = None, False
        return accepted

    def _starved(self, exc: OSError) -> None:
        if self.starved_since is None:
            self.starved_since = time.monotonic()
        dropped = BurstServer.starved_log.take(time.monotonic())
        if dropped is not None:
            self.said = True
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            logger.warning("cannot accept connections on %s: %s (this worker may open %d files, "
                           "ulimit -n): new connections wait in the listen queue until streams "
                           "end; raise the limit (LimitNOFILE= under systemd)%s",
                           _address(self.address), exc.strerror, limit, more_since(dropped))
        # As gevent does after a failed accept: try again later, a little later each time.
        self.stop_accepting()
        self._timer = self.loop.timer(self.pause)
        self._timer.start(self._start_accepting_if_started)
        self.pause = min(self.max_delay, self.pause * 2)

    @property
    def max_accept(self) -> int:
        return ACCEPT_BURST

    @max_accept.setter
    def max_accept(self, value: int) -> None:
        pass


def log_hub_errors() -> None:
    """What gevent's hub reports (a greenlet that failed, an error in a callback) goes
    through logging, as one record with its traceback (JSON under LOG_FORMAT=json), where
    the hub printed it straight to stderr."""
    from gevent.hub import Hub

    def print_exception(hub, context, t, v, tb):
        if context is not None and not isinstance(context, str):
            try:
                context = hub.format_context(context)
            except Exception:  # noqa: BLE001 - the error itself matters more than its context
                context = repr(context)
        logging.getLogger("gevent.hub").error(
            "%s failed with %s", context or "the hub", getattr(t, "__name__", "exception"),
            exc_info=(t, v, tb) if v is not None else None)

    Hub.print_exception = print_exception


def drain_on_monotonic() -> None:
    """gunicorn's gevent worker gives its requests graceful_timeout after a SIGTERM by the wall
    clock: a step forward cut every stream still draining at once (web/clocks.py)."""
    ggevent.time = clocks.MONOTONIC


def _address(address) -> str:
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)


ggevent.StreamServer = BurstServer     # the class GeventWorker.run builds its servers with


def unacked_limit_ms(settings) -> int:
    """TCP_USER_TIMEOUT of every connection: data unacknowledged this long ends it. A client
    that vanished without a FIN or RST (a dead link, a sleeping laptop) is then noticed after
    its next heartbeat, not after TCP's own ~15 minutes of retransmissions."""
    return 1000 * max(UNACKED_MIN_S, 2 * settings.sse_heartbeat_seconds)


def _limit_unacked(client, ms: int) -> None:
    try:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, ms)
    except OSError:
        pass


def door_limits(settings) -> DoorLimits:
    return DoorLimits(timeout=float(settings.http_header_timeout_seconds),
                      per_address=settings.http_max_pending_per_ip,
                      total=settings.http_max_pending,
                      exempt=tuple(settings.trusted_proxies))


# The CORS headers of every answer written here, not by the app: those the app gives any origin
# (CORS_ALLOWED_ORIGINS=*). A listed origin is echoed by the app only: the request that is
# refused here has not been read far enough to know its Origin.
_cors: tuple[str, ...] = ()


def _answer(status: str, code: str, message: str, retry_after: int | None = None) -> bytes:
    body = json.dumps({"error": code, "message": message}, separators=(",", ":")).encode()
    head = [f"HTTP/1.1 {status}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close", *_cors]
    if retry_after is not None:
        head.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


# gunicorn's own refusals (a request it cannot parse): status -> our error code
PARSER_ERRORS = {400: "bad_request", 403: "forbidden", 414: "uri_too_long",
                 417: "expectation_failed", 431: "request_header_fields_too_large",
                 500: "internal_error", 501: "not_implemented"}


# What to send instead, after gunicorn's message, where the client can do something about it
PARSER_ADVICE = {
    414: "shorten the URL (a filter of many types fits as patterns with wildcards, such as "
         "orders.*)",
    417: "send no Expect header other than Expect: 100-continue",
    431: "send fewer or smaller header fields (oversized cookies are a usual cause)",
}


# A PROXY protocol (v1) header where the request line should be: gunicorn's refusal quotes it
_PROXY_LINE = re.compile(r"request line: '?PROXY (TCP4|TCP6|UNKNOWN)\b")
PROXY_PROTOCOL = ("the proxy sent a PROXY protocol header, which the gateway does not read: "
                  "remove send-proxy (HAProxy) or proxy_protocol (nginx) and have the proxy set "
                  "X-Forwarded-For (README, Running in production)")


def _dated(answer: bytes, head_only: bool = False) -> bytes:
    """An answer of `_answer` with its Date header (RFC 9110 6.6.1), without its body for a
    HEAD request (9.3.2)."""
    status, _, rest = answer.partition(b"\r\n")
    if head_only:
        rest = rest[:rest.index(b"\r\n\r\n") + 4]
    return b"%s\r\nDate: %s\r\n%s" % (status, gunicorn_util.http_date().encode(), rest)


def write_json_error(sock, status_int: int, reason: str, mesg: str,
                     head_only: bool = False) -> None:
    """gunicorn's `util.write_error` in our JSON shape (it writes an HTML page). Its message
    may quote the request line: credentials in it are masked, as in the log."""
    status = HTTPStatus(status_int)
    code = PARSER_ERRORS.get(status_int, "bad_request")
    if mesg and _PROXY_LINE.search(mesg):
        mesg = PROXY_PROTOCOL
    message = redact_words(mesg) if mesg else "the server failed to answer; see its log"
    if status_int in PARSER_ADVICE:
        message = f"{message}: {PARSER_ADVICE[status_int]}"
    gunicorn_util.write_nonblock(sock, _dated(
        _answer(f"{status_int} {status.phrase}", code, message), head_only))


def _write_now(sock, data: bytes) -> None:
    """Best effort, never waits: the fd is non-blocking under gevent (a full buffer: nothing)."""
    try:
        os.write(sock.fileno(), data)
    except (OSError, ValueError):
        pass


def _shut(sock) -> None:
    """End a connection another greenlet is reading: its read returns EOF and it closes. The
    system socket's shutdown, not gevent's, which wakes that read with an error instead
    (cancel_wait_ex), logged by gunicorn with a traceback."""
    try:
        getattr(sock, "_sock", sock).shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class BoundedRequest(gunicorn_message.Request):
    """gunicorn's request, its head bounded at MAX_HEAD_BYTES (gunicorn sets the bound to its
    fields limit times its field size limit)."""

    _head_bytes = MAX_HEAD_BYTES

    @property
    def max_buffer_headers(self) -> int:
        return self._head_bytes

    @max_buffer_headers.setter
    def max_buffer_headers(self, value: int) -> None:
        self._head_bytes = min(value, MAX_HEAD_BYTES)


def bound_request_heads() -> None:
    """Every HTTP/1 request this process parses is a BoundedRequest."""
    gunicorn_parser.RequestParser.mesg_class = BoundedRequest


FILES_KEPT = 64     # of a low open-files limit, kept from connections: Kafka, gRPC, the probes


def _raise_file_limit(needed: int) -> int | None:
    """Raise the open-files limit to `needed`; the limit, when the hard limit keeps it lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return new if new < needed else None


def connections_within(limit: int, needed: int, listeners: int = 1) -> int:
    """The connections each listener's pool may hold under an open-files `limit` below
    `needed`, all `listeners` together within it: at the limit, every accept failed, the admin
    port's and the probes' too (a liveness probe would restart a worker that only lacked
    room), and the worker could not reach Kafka."""
    connections = max(1, (limit - FILES_KEPT) // max(1, listeners))
    logger.warning("open files limited to %d (ulimit -n, the hard limit), where %d are wanted: "
                   "this worker holds at most %d connections on each listener (more wait in "
                   "the listen queue), keeping %d files for Kafka, the management API and the "
                   "probes; raise the hard limit (LimitNOFILE= under systemd)",
                   limit, needed, connections, FILES_KEPT)
    return connections


def freeze_settings(cfg) -> None:
    """gunicorn's Config answers every setting through `__getattr__` (a dict look-up and a
    call, ~20 per request: its parser alone asks 14). In a worker the settings no longer change
    (a reload starts new workers), so each is put on the object once: a plain attribute read.
    Names the class answers itself (properties such as worker_class) are left to it."""
    kind = type(cfg)
    for name, setting in cfg.settings.items():
        if not hasattr(kind, name):
            object.__setattr__(cfg, name, setting.get())


def per_second(http_date):
    """gunicorn's `http_date` formatted once a second, the Date header's resolution (it costs
    ~6 us through email.utils, and every response asks for it); with a timestamp, as it is."""
    last: list = [None, ""]

    def cached(timestamp=None):
        if timestamp is not None:
            return http_date(timestamp)
        second = int(time.time())
        if second != last[0]:
            last[0], last[1] = second, http_date(second)
        return last[1]
    return cached


class _Bound:
    """A listening socket as gunicorn's handler uses it: only its name, which it asks first
    thing (the environ's SERVER_NAME and SERVER_PORT), also once the socket is closed."""

    __slots__ = ("_name",)

    def __init__(self, name):
        self._name = name

    def getsockname(self):
        return self._name


class GatewayWorker(GeventWorker):
    """GeventWorker + the door (see the module docstring)."""

    door: Door | None = None
    _bound: dict = {}
    _quitting = False

    def run(self):
        freeze_settings(self.cfg)
        gunicorn_util.http_date = per_second(gunicorn_util.http_date)
        gunicorn_util.write_error = write_json_error
        bound_request_heads()
        log_hub_errors()
        settings = self.wsgi.config["SETTINGS"]
        global _cors
        from web.cors import cors_headers    # here: it imports PyJWT, after gevent's patching
        _cors = tuple(f"{name}: {value}" for name, value in
                      cors_headers(None, settings.cors_allowed_origins).items())
        limits = door_limits(settings)
        self.door = Door(limits)
        from web.metrics import UNFINISHED_CLOSED, UNFINISHED_REASONS   # in the worker only
        self._closed = {reason: UNFINISHED_CLOSED.labels(reason)      # each shown from 0
                        for reason in UNFINISHED_REASONS}
        self._unacked_ms = (unacked_limit_ms(settings) if hasattr(socket, "TCP_USER_TIMEOUT")
                            else 0)           # Linux only
        self._timed_out = _answer(
            "408 Request Timeout", "request_timeout",
            f"the request head was not complete within {limits.timeout:g} s "
            "(HTTP_HEADER_TIMEOUT_SECONDS); send the whole request at once")
        self._refused = _answer(
            "429 Too Many Requests", "too_many_pending_requests",
            f"your address has {limits.per_address} connections whose request is not complete "
            "(HTTP_MAX_PENDING_PER_IP); finish or close one, then retry", retry_after=1)
        # The listeners' names, for the handlers: a stopping worker closes its listeners
        # (_stop_listening) while connections it accepted just before are still to be served.
        self._bound = {listener: _Bound(listener.getsockname()) for listener in self.sockets}
        # Pending connections get their own room in the pool: they never take the streams'.
        self.worker_connections += limits.total
        needed = self.worker_connections * len(self.sockets) + 256   # each listener's pool
        limit = _raise_file_limit(needed)
        if limit is not None:
            self.worker_connections = connections_within(limit, needed, len(self.sockets))
        gevent.spawn(self._sweep)
        drain_on_monotonic()
        super().run()

    def handle_exit(self, sig, frame):
        """SIGTERM (a stop, a reload): accept no more, at once (gunicorn closes the listeners
        only at its loop's next turn, up to a second later); the other workers take what comes.
        What this worker accepted before is still answered: a stream is drained like the
        others, and a request head on its way gets STOP_GRACE_SECONDS to arrive."""
        super().handle_exit(sig, frame)
        gevent.spawn(self._stopping)            # out of the signal handler: it may have
                                                # interrupted the hub inside an accept

    def _stopping(self) -> None:
        self._stop_listening()
        service = getattr(self, "sse_service", None)
        if service is not None:
            service.wake()                      # the drain starts now, not at its next look

    @staticmethod
    def _stop_listening() -> None:
        """Take what the kernel has queued, then close the listening sockets, in one go. On a
        stop the master has closed its copies already: a socket left open but not accepted
        from queued each new connection until the worker closed it, then reset it after its
        request went out (36 of 96 in the test), where a balancer moves a refused connection
        to another instance. On a reload the master's copies keep them open for the new
        workers."""
        for server in list(BurstServer.running):
            if server.closed:       # a second SIGTERM (systemd's and the master's)
                continue
            server.stop_accepting()
            try:
                while not server.full() and (accepted := server.do_read()):
                    server.do_handle(*accepted)     # answered like any other (handle)
            except OSError:
                pass
            server.close()          # gunicorn's own close, at its loop's next turn, is a no-op

    # -- connections ----------------------------------------------------------------------
    def handle(self, listener, client, addr):
        door = self.door         # stopping or not: what was accepted is answered (handle_exit)
        admitted, evict = door.enter(client, addr, time.monotonic())
        if evict is not None:     # closed unanswered: EventSource retries a network error,
            _shut(evict)          # never an HTTP error status
            self._closed["pending_evicted"].inc()
        if not admitted:
            self._refuse(client)
            self._closed["too_many_pending_requests"].inc()
            return None
        if self._unacked_ms and client.family != socket.AF_UNIX:
            _limit_unacked(client, self._unacked_ms)
        try:
            return super().handle(self._bound.get(listener, listener), client, addr)
        finally:
            door.done(client)

    def handle_quit(self, sig, frame):
        """Once: Ctrl-C reaches the worker from the terminal and again from the master, and a
        second sys.exit(0) in a greenlet, during the interpreter's exit, hung the worker until
        the master's SIGKILL (a traceback, and 10 s, at every other Ctrl-C of `make run`). A
        worker still starting ends as after SIGTERM: its exit from inside the start hung too."""
        if self._quitting:
            return
        self._quitting = True
        if getattr(self, "sse_service", None) is None:
            self.alive = False          # run() returns at once, and worker_exit stops it all
            return
        super().handle_quit(sig, frame)

    def handle_request(self, listener_name, req, sock, addr):
        self.door.done(sock)                  # the head is complete: no longer pending
        if req.version >= (1, 1) and not any(name == "HOST" for name, _ in req.headers):
            write_json_error(sock, 400, "Bad Request", "an HTTP/1.1 request needs a Host "
                                                       "header (RFC 9112 3.2)",
                             head_only=req.method == "HEAD")
            return False                      # RFC 9112: MUST answer 400; gunicorn served it
        return super().handle_request(listener_name, req, sock, addr)

    def handle_http2_request(self, listener_name, req, sock, addr, h2_conn):
        self.door.done(sock)
        return super().handle_http2_request(listener_name, req, sock, addr, h2_conn)

    def _refuse(self, client) -> None:
        _write_now(client, _dated(self._refused))
        try:                                  # take what the client sent, so close sends FIN
            os.read(client.fileno(), 65536)
        except (OSError, ValueError):
            pass
        try:
            client.close()
        except OSError:
            pass

    # -- the sweeper ----------------------------------------------------------------------
    def _sweep(self) -> None:
        door, reported, last = self.door, (0, 0, 0), time.monotonic()
        assert door is not None, "run() sets the door before the sweeper starts"
        while self.alive:
            gevent.sleep(SWEEP_SECONDS)
            try:
                for sock in door.expired(time.monotonic()):
                    _write_now(sock, _dated(self._timed_out))
                    _shut(sock)
                    self._closed["request_timeout"].inc()
                if time.monotonic() - last >= REPORT_SECONDS:
                    reported, last = self._report(reported), time.monotonic()
            except Exception:  # noqa: BLE001 - the sweeper must outlive any one bad socket
                logger.exception("unfinished-request sweeper: carrying on")
        grace = time.monotonic() + STOP_GRACE_SECONDS
        while len(door) and time.monotonic() < grace:     # stopping: a head on its way
            gevent.sleep(SWEEP_SECONDS)
        for sock in door.drain():             # still half-sent: will not be served
            _shut(sock)
        self._report(reported)

    def _report(self, before):
        invalid_requests = getattr(self.log, "report_unlogged", None)  # web/gunicorn_log.py
        if invalid_requests is not None:
            invalid_requests()
        report_unlogged()               # the counts of lines dropped by the actors' budgets
        door = self.door
        now = (door.timed_out, door.refused, door.evicted)
        timed_out, refused, evicted = (a - b for a, b in zip(now, before, strict=True))
        if timed_out or refused or evicted:
            logger.warning("unfinished requests: %d closed after HTTP_HEADER_TIMEOUT_SECONDS=%g, "
                           "%d refused over HTTP_MAX_PENDING_PER_IP=%d, %d closed over "
                           "HTTP_MAX_PENDING=%d (%d pending now)", timed_out,
                           door.limits.timeout, refused, door.limits.per_address, evicted,
                           door.limits.total, len(door))
        return now
