"""GET /events: one Server-Sent Events stream per request, fed by its own ClientActor."""
from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timezone

import pykka
from flask import Blueprint, Response, current_app, request

from actors import framing
from actors.client import ClientActor
from actors import resume
from actors.filters import Filter, FilterError
from actors.messages import ClientInfo
from actors.outbox import Outbox
from web.errors import json_error
from web.system import current_system

logger = logging.getLogger(__name__)

bp = Blueprint("stream", __name__)

STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _flag(name: str, default: bool) -> bool:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise FilterError(f"{name}: expected true or false, got {raw[:20]!r}")


def _last_event_id(settings) -> tuple[str | None, dict | None]:
    """The raw Last-Event-ID (header or query) and the frontier in it (None: not ours)."""
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    if not raw:
        return None, None
    return raw, resume.decode(settings.kafka_topics, raw)


def _since() -> int | None:
    """`since` as epoch milliseconds: RFC 3339 time or a number of milliseconds."""
    raw = request.args.get("since")
    if not raw:
        return None
    if raw.isdigit() and len(raw) <= 15:
        return int(raw)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise FilterError("since: expected an RFC 3339 time or epoch milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


@bp.get("/events")
def events():
    system = current_system()
    settings = current_app.config["SETTINGS"]
    try:
        flt = Filter.parse(request.args.get("event_types"), request.args.get("sources"))
        named = not _flag("unnamed", False)
        history = _flag("history", True)
        since_ms = _since()
    except FilterError as exc:
        return json_error(400, "bad_request", str(exc))
    raw_id, after = _last_event_id(settings)
    if raw_id and after is None:
        logger.info("ignoring a Last-Event-ID this gateway did not issue: %r", raw_id[:80])
    if request.method == "HEAD":
        return Response(b"", mimetype="text/event-stream", headers=STREAM_HEADERS)

    info = ClientInfo(
        id=uuid.uuid4().hex[:12],
        remote_addr=request.remote_addr or "",
        user_agent=request.headers.get("User-Agent", "")[:200],
        filter=flt,
        named=named,
        connected_at=time.time(),
    )
    outbox = Outbox(settings.sse_event_buffer_size)
    client = ClientActor.start(info=info, outbox=outbox, broker=system.broker, after=after,
                               replay=history or raw_id is not None, since_ms=since_ms)
    logger.info("client %s connected from %s (%s)%s", info.id, info.remote_addr,
                flt.describe(), f" resuming after {raw_id[:80]!r}" if raw_id else "")
    body = _stream(outbox, client, info, framing.retry(settings.sse_retry_ms))
    return Response(body, mimetype="text/event-stream", headers=STREAM_HEADERS)


def _stream(outbox: Outbox, client, info: ClientInfo, opening: bytes):
    reason = "client went away"
    try:
        yield opening + framing.comment(f"client {info.id}")
        while True:
            data, count, last_id = outbox.take()
            if data:
                yield data
                outbox.written(count, last_id)
            if outbox.finished:
                reason = outbox.closed_reason
                break
    finally:
        try:
            client.stop(block=False)
        except pykka.ActorDeadError:
            pass
        logger.info("client %s disconnected: %s (%d events sent, %d dropped)",
                    info.id, reason, outbox.sent, outbox.dropped)
