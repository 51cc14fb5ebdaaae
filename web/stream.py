"""GET /events: one Server-Sent Events stream per request, opened through the core's gateway.

With AUTH_MODE on, the request is identified first (web/auth.py: 401), its filter narrowed to
the subject's scope (403 when wholly outside it). A stream is then admitted by the rate limiter
(gateway.admit, counted per subject too) and holds a slot until its body is closed; closing
it (always exactly once) ends the stream: the client's actor stops and the slot is given back.
"""
from __future__ import annotations

import logging
import socket
import time

from flask import Blueprint, Response, current_app, g, request

from actors import framing, resume
from actors.auth.redact import mask_credentials
from actors.filters import FilterError
from actors.gateway import LATENCY_SAMPLE, Stream
from web import close_watch, metrics
from web.address import limit_key
from web.auth import refuse_tokens_in_url, stream_credentials
from web.core import current_gateway, write_checker
from web.errors import json_error
from web.params import stream_params
from web.slow_writes import WriteChecker

logger = logging.getLogger(__name__)

bp = Blueprint("stream", __name__)

STREAM_HEADERS = {
    # no-transform: a compressing proxy (Express's compression(), a dev server's) would hold
    # the stream back to fill its buffers, and EventSource would never open
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}
STUCK_AFTER = 2.0   # seconds a closed stream may spend on its last write before it is cut


@bp.get("/events")
def events():
    """GET is served ahead of Flask (web/events_path.py); HEAD, and a GET the app is handed
    directly, come here: the same checks and answers."""
    try:
        body = open_events(current_app.config["SETTINGS"], current_gateway(),
                           write_checker(current_app), request.environ, request.args,
                           request.headers, request.cookies.get, g.client_address,
                           head=request.method == "HEAD")
    except FilterError as exc:
        return json_error(400, "bad_request", str(exc))
    # direct_passthrough: the server iterates (and closes) the body itself, without werkzeug's
    # two wrappers around every write. HEAD: an empty iterator, not b"", so that no
    # `Content-Length: 0` says the stream is empty (a GET's has no length at all).
    return Response(iter(()) if body is None else body, mimetype="text/event-stream",
                    headers=STREAM_HEADERS, direct_passthrough=body is not None)


def open_events(settings, gateway, checker: WriteChecker | None, environ, args, headers,
                cookies, address: str, *, head: bool = False) -> "StreamBody | None":
    """The stream of one request (None for HEAD: checked and admitted, nothing opened), from
    its parts: `args` and `headers` as web/params.py reads them, `cookies(name)`, the client's
    `address` (web/address.py). Raises what web/errors.py answers, and FilterError (400)."""
    refuse_tokens_in_url(args, gateway.auth is not None)     # 400 before anything is read
    # nothing refused costs a ticket: it is checked here, spent just before the stream opens
    params = stream_params(args, headers, settings.kafka_topics)
    auth = gateway.auth
    identity, ticket = (stream_credentials(auth, headers, cookies, args,
                                           settings.cors_allowed_origins)
                        if auth else (None, None))
    flt, scope = params.filter, ""
    if auth is not None:
        granted = auth.scope_of(identity)
        flt, scope = granted.narrow(params.filter), granted.describe()    # or 403
    subject = identity.subject if identity is not None else None
    lease = gateway.admit(limit_key(address), stream=not head, subject=subject, peek=head)
    with lease:     # given back here unless the stream takes it over
        raw_id = params.last_event_id and _masked(params.last_event_id)     # for logs
        ignored = bool(raw_id) and params.resume is None
        foreign = ignored and _foreign(settings.kafka_topics, params.last_event_id or "")
        if head:
            return None
        stream = gateway.open_stream(
            lease=lease, remote_addr=address,
            user_agent=_masked(headers.get("User-Agent") or "")[:200], filter=flt,
            named=params.named, with_history=params.with_history, since_ms=params.since_ms,
            resume=params.resume, identity=identity, scope=scope, topics_changed=foreign,
            # spent by the stream it opens, and by nothing else (not by a stopping worker's 503)
            spend=(lambda: auth.redeem(ticket)) if ticket else None)
    if logger.isEnabledFor(logging.INFO):      # LOG_LEVEL=WARNING: not even the arguments
        _log_opened(stream.info, subject, _whence(raw_id, ignored, params))
    opening = framing.retry(settings.sse_retry_ms, framing.quarter_jitter)
    return StreamBody(stream, opening, environ, checker)


def _masked(text: str) -> str:
    """`text` with its credentials masked, for a line that shows its start (at most 200
    characters): its first 1,000 are enough, and a header of 8 KB of token-like words would
    cost milliseconds. A token cut there has lost its signature: what is left cannot be used."""
    return mask_credentials(text[:1000])


def _log_opened(info, subject: str | None, whence: str) -> None:
    described = info.filter.describe()
    logger.info("client %s connected from %s%s (%s)%s", info.id, info.remote_addr,
                f" as subject {subject!r}" if subject is not None else "", described, whence,
                extra={"client_id": info.id, "client_address": info.remote_addr,
                       "filter": described, "subject": subject})


def _since(since_ms: int | None) -> str:
    if since_ms is None:
        return ""
    return time.strftime(" since %Y-%m-%dT%H:%M:%S", time.gmtime(since_ms // 1000)) \
        + f".{since_ms % 1000:03d}Z"


_WARNED: set = set()    # topics checks of other configurations' ids, warned about once each


def _whence(raw_id: str | None, ignored: bool, params) -> str:
    """Where the stream starts, for its line: after the id it resumes, since a time, or (an id
    this gateway did not issue being ignored) as a new stream."""
    since = _since(params.since_ms)
    if not raw_id:
        return since
    if not ignored:
        return f" resuming after {raw_id[:80]!r}{since}"
    start = since.strip() or ("from the history" if params.with_history
                              else "live only (history=false)")
    return f" with a Last-Event-ID this gateway did not issue ({raw_id[:80]!r}), ignored: {start}"


def _foreign(topics, token: str) -> bool:
    """Is this Last-Event-ID, which this gateway cannot read, one of an instance with other
    KAFKA_TOPICS (config drift, or a rolling deploy that changes the list)? It costs the client
    its place: the client gets a `gap` event, and the operator is told, once per such
    configuration in a worker (the stream's own line says it of each client)."""
    check = resume.foreign(topics, token)
    if check is not None and check not in _WARNED and len(_WARNED) < 16:
        _WARNED.add(check)
        logger.warning("a client resumed with an id of a gateway whose KAFKA_TOPICS differ from "
                       "this one's (other topics, or the same in another order): it starts "
                       "over as a new stream (told by a gap event, topics_changed), and what "
                       "it missed before that is lost; give every instance the same "
                       "KAFKA_TOPICS, in the same order (more such ids are logged at INFO)")
    return check is not None


class StreamBody:
    """One stream's response body. The server calls close() after the last write, when a
    write fails, or when the body was never started: it ends the stream (actor and slot)."""

    def __init__(self, stream: Stream, opening: bytes, environ, checker: WriteChecker | None):
        self.stream, self.info = stream, stream.info
        self.opening, self.environ, self.checker = opening, environ, checker
        self.sock = environ.get("gunicorn.socket")
        self.reason = close_watch.GONE
        self.frames = None
        self.unwatch = None
        self.writing = False        # suspended at a yield: the server is writing our bytes
        self.stuck_since: float | None = None
        self.reported_slow = False
        self.done = False
        self.writes = 0
        # Set by the server's adapter (web/events_path.py): writes the response head and the
        # first chunk in one send; None: the first chunk is yielded like the others.
        self.first_write = None

    def __iter__(self):
        self.frames = self._frames()
        return self.frames

    def _frames(self):
        stream = self.stream
        if self.checker is not None:
            self.checker.track(self)
        self.unwatch = close_watch.watch(self.environ, stream.close)
        try:
            first = self.opening + framing.comment(self._greeting())
            if self.first_write is None:
                yield first
            else:
                self.writing = True
                self.first_write(first)
                self.writing = False
            sendall = self._go_direct()
            take, written = stream.take, stream.written
            while True:
                data, count, last_id = take()
                if data:
                    self.writing = True
                    if sendall is None:
                        yield data
                    elif (failed := _send_all(sendall, data)) is not None:
                        self._failed(failed)
                        break
                    self.writing = False
                    oldest = stream.taken_oldest_ms
                    if oldest:      # live events: 1 write in LATENCY_SAMPLE is timed
                        self.writes += 1
                        if self.writes % LATENCY_SAMPLE == 1:
                            metrics.observe_write(oldest)
                    written(count, last_id)
                if stream.finished:
                    self.reason = stream.closed_reason
                    break
        finally:
            self._finish()

    def _go_direct(self):
        """After the headers: let the broker write to the socket itself (Outbox.go_direct).
        Returns the socket's (cooperative) sendall for what it leaves, or None: plain HTTP
        through gunicorn's gevent socket only, never TLS. Judged by the socket, not by
        wsgi.url_scheme: a trusted proxy's X-Forwarded-Proto makes that https on a plain one."""
        sock, environ = self.sock, self.environ
        raw = getattr(sock, "_sock", None)
        if raw is None or hasattr(sock, "_sslobj") or environ.get("gunicorn.socket") is not sock:
            return None
        chunked = environ.get("SERVER_PROTOCOL", "HTTP/1.0") not in ("HTTP/1.0", "HTTP/0.9")
        self.stream.go_direct(raw.send, chunked, metrics.observe_write, close_watch.gone_reason)
        return sock.sendall

    def _failed(self, reason: str) -> None:
        """A write failed: the stream ends for the reason it was closed with, if it was (the
        broker counted a slow client, an operator disconnected it), else for the failure's.
        A connection cut by check() keeps the reason check() gave."""
        if self.sock is not None:
            self.reason = self.stream.closed_reason or reason

    def _greeting(self) -> str:
        subject = getattr(self.info, "subject", None)
        return f"client {self.info.id}" + (f" subject {subject}" if subject else "")

    def close(self) -> None:
        if self.frames is not None:
            self.frames.close()
        self._finish()

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        if self.checker is not None:
            self.checker.forget(self)
        if self.unwatch is not None:
            self.unwatch()
        stream = self.stream
        stream.end()
        if not logger.isEnabledFor(logging.INFO):
            return
        subject = getattr(self.info, "subject", None)
        logger.info("client %s%s disconnected: %s (%d events sent, %d dropped)",
                    self.info.id, f" (subject {subject!r})" if subject else "", self.reason,
                    stream.sent, stream.dropped,
                    extra={"client_id": self.info.id, "client_address": self.info.remote_addr,
                           "subject": subject,
                           "filter": self.info.filter.describe(), "reason": self.reason,
                           "events_sent": stream.sent, "events_dropped": stream.dropped})

    def check(self, now: float) -> None:
        """Report a client whose socket stopped taking events (the broker cuts it), and cut a
        closed stream whose last write does not finish: its client stopped reading."""
        if self.sock is None:
            return
        stream = self.stream
        if not (self.reported_slow or stream.closed_reason) and stream.lagging(now):
            self.reported_slow = True          # events wait and no new batch will judge it
            stream.report_slow()
        if not (self.writing and stream.closed_reason):
            self.stuck_since = None
        elif self.stuck_since is None:
            self.stuck_since = now
        elif now - self.stuck_since >= STUCK_AFTER:
            self.reason = f"{stream.closed_reason}; not reading, connection cut"
            _cut(self.sock)
            self.sock = None


def _send_all(sendall, data: bytes) -> str | None:
    """Write what the socket did not take at once; None, or why the client is gone."""
    try:
        sendall(data)
        return None
    except OSError as error:
        return close_watch.gone_reason(error)


def _cut(sock) -> None:
    """Shut the connection down under the blocked write, which then fails with EPIPE (through
    a duplicate descriptor, so gevent reports a broken pipe, not a descriptor closed under it)."""
    try:
        duplicate = sock.dup()
    except OSError:
        return
    try:
        duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        duplicate.close()
