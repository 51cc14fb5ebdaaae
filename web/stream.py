"""GET /events: one Server-Sent Events stream per request, fed by its own ClientActor.

A stream is admitted by the rate limiter first (web/protect.py) and holds a slot until its
body is closed; closing it (always exactly once) stops the actor and gives the slot back.
"""
from __future__ import annotations

import logging
import re
import socket
import threading
import time
import uuid
from datetime import datetime, timezone

import pykka
from flask import Blueprint, Response, current_app, g, request

from actors import framing
from actors.broker import SLOW_CLIENT
from actors.client import ClientActor
from actors import resume
from actors.filters import Filter, FilterError
from actors.messages import ClientInfo, DisconnectClient
from actors.outbox import Outbox
from web import metrics, protect, watch
from web.errors import json_error
from web.system import current_system

logger = logging.getLogger(__name__)

bp = Blueprint("stream", __name__)

STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
LATENCY_SAMPLE = 8   # the latency histogram sees the first of every 8 live writes of a stream
STUCK_AFTER = 2.0   # seconds a closed stream may spend on its last write before it is cut


def _flag(name: str, default: bool) -> bool:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise FilterError(f"{name}: expected true or false, got {raw[:20]!r}")


def _last_event_id(settings) -> tuple[str | None, resume.Resume | None]:
    """The raw Last-Event-ID (header or query) and the position in it (None: not ours)."""
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    if not raw:
        return None, None
    return raw, resume.read(settings.kafka_topics, raw)


_EPOCH_MS = re.compile(r"-?[0-9]{1,15}")


def _since() -> int | None:
    """`since` as epoch milliseconds: RFC 3339 time or a number of milliseconds (at most 15
    digits). A time before the epoch means the earliest retained event: it becomes 0."""
    raw = request.args.get("since")
    if not raw:
        return None
    if _EPOCH_MS.fullmatch(raw):
        return max(0, int(raw))
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise FilterError("since: expected an RFC 3339 time or epoch milliseconds "
                          "(at most 15 digits)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0, int(moment.timestamp() * 1000))


def _param(name: str) -> str | None:
    """A list parameter; repeating it (`?event_types=a&event_types=b`) adds to the list."""
    values = request.args.getlist(name)
    return ",".join(values) if values else None


@bp.get("/events")
def events():
    system = current_system()
    lease = protect.admit(system, stream=request.method != "HEAD")
    with lease:     # given back here unless the stream takes it over
        return _events(system, lease)


def _events(system, lease):
    settings = current_app.config["SETTINGS"]
    try:
        flt = Filter.parse(_param("event_types"), _param("sources"))
        named = not _flag("unnamed", False)
        history = _flag("history", True)
        since_ms = _since()
    except FilterError as exc:
        return json_error(400, "bad_request", str(exc))
    raw_id, position = _last_event_id(settings)
    after = position.offsets if position is not None else None
    if raw_id and position is None:
        logger.info("ignoring a Last-Event-ID this gateway did not issue: %r", raw_id[:80])
    if request.method == "HEAD":
        return Response(b"", mimetype="text/event-stream", headers=STREAM_HEADERS)

    info = ClientInfo(
        id=uuid.uuid4().hex[:12],
        remote_addr=g.client_address,
        user_agent=request.headers.get("User-Agent", "")[:200],
        filter=flt,
        named=named,
        connected_at=time.time(),
    )
    outbox = Outbox(settings.sse_event_buffer_size,
                    settings.sse_event_buffer_size * settings.sse_max_event_bytes)
    client = ClientActor.start(info=info, outbox=outbox, broker=system.broker, after=after,
                               replay=history or raw_id is not None, since_ms=since_ms,
                               recreated=position.recreated if position is not None else {})
    logger.info("client %s connected from %s (%s)%s", info.id, info.remote_addr,
                flt.describe(), f" resuming after {raw_id[:80]!r}" if raw_id else "",
                extra={"client_id": info.id, "client_address": info.remote_addr,
                       "filter": flt.describe()})
    body = _Body(outbox, client, info, framing.retry(settings.sse_retry_ms), lease.hand_over(),
                 request.environ, system.broker)
    return Response(body, mimetype="text/event-stream", headers=STREAM_HEADERS)


class _Body:
    """One stream's response body. The server calls close() after the last write, when a
    write fails, or when the body was never started: it stops the actor, releases the slot."""

    def __init__(self, outbox: Outbox, client, info: ClientInfo, opening: bytes, lease, environ,
                 broker=None):
        self.outbox, self.client, self.info, self.broker = outbox, client, info, broker
        self.opening, self.lease, self.environ = opening, lease, environ
        self.sock = environ.get("gunicorn.socket")
        self.reason = "client went away"
        self.frames = None
        self.unwatch = None
        self.writing = False        # suspended at a yield: the server is writing our bytes
        self.stuck_since: float | None = None
        self.reported_slow = False
        self.done = False
        self.writes = 0

    def __iter__(self):
        self.frames = self._frames()
        return self.frames

    def _frames(self):
        _track(self)
        self.unwatch = watch.watch(self.environ, lambda: self.outbox.close("client went away"))
        try:
            yield self.opening + framing.comment(f"client {self.info.id}")
            while True:
                data, count, last_id = self.outbox.take()
                if data:
                    self.writing = True
                    yield data
                    self.writing = False
                    if self.outbox.taken_oldest_ms:     # live events: 1 write in 8 is timed
                        self.writes += 1
                        if self.writes % LATENCY_SAMPLE == 1:
                            metrics.observe_write(self.outbox.taken_oldest_ms)
                    self.outbox.written(count, last_id)
                if self.outbox.finished:
                    self.reason = self.outbox.closed_reason
                    break
        finally:
            self._finish()

    def close(self) -> None:
        if self.frames is not None:
            self.frames.close()
        self._finish()

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        _serving.discard(self)
        if self.unwatch is not None:
            self.unwatch()
        try:
            self.client.stop(block=False)
        except pykka.ActorDeadError:
            pass
        self.lease.release()
        logger.info("client %s disconnected: %s (%d events sent, %d dropped)",
                    self.info.id, self.reason, self.outbox.sent, self.outbox.dropped,
                    extra={"client_id": self.info.id, "client_address": self.info.remote_addr,
                           "filter": self.info.filter.describe(), "reason": self.reason,
                           "events_sent": self.outbox.sent,
                           "events_dropped": self.outbox.dropped})

    def check(self, now: float) -> None:
        """Report a client whose socket stopped taking events (the broker cuts it), and cut a
        closed stream whose last write does not finish: its client stopped reading."""
        if self.sock is None:
            return
        if not self.reported_slow and self.broker is not None and self.outbox.lagging(now):
            self.reported_slow = True          # events wait and no new batch will judge it
            self.broker.tell(DisconnectClient(self.info.id, SLOW_CLIENT))
        if not (self.writing and self.outbox.closed_reason):
            self.stuck_since = None
        elif self.stuck_since is None:
            self.stuck_since = now
        elif now - self.stuck_since >= STUCK_AFTER:
            self.reason = f"{self.outbox.closed_reason}; not reading, connection cut"
            _cut(self.sock)
            self.sock = None


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


_serving: set = set()       # the bodies being written, checked by one greenlet per worker
_checker: list = []


def _track(body: _Body) -> None:
    _serving.add(body)
    if not _checker:
        thread = threading.Thread(target=_check_forever, name="stuck-writes", daemon=True)
        _checker.append(thread)
        thread.start()


def _check_forever() -> None:
    while True:
        time.sleep(1.0)
        now = time.monotonic()
        for body in list(_serving):
            try:
                body.check(now)
            except Exception:  # noqa: BLE001 - one odd socket must not end the watch
                logger.exception("checking stream %s failed", body.info.id)
