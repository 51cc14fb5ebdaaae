"""The event model: Kafka record -> Event, with its SSE frames encoded once (pure, no I/O)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from actors import framing


class InvalidRecord(ValueError):
    """A Kafka record that cannot become an event; the message says why."""


class Tombstone(InvalidRecord):
    """A record without a value (a deletion marker of a compacted topic): not an event."""


@dataclass(frozen=True, slots=True)
class Position:
    topic: str
    partition: int
    offset: int

    def token(self) -> str:
        """A readable name of the position (the SSE id is the frontier: actors/resume.py)."""
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True, slots=True)
class Event:
    position: Position
    type: str
    source: str
    timestamp_ms: int
    sse_id: str
    named: bytes        # frame with an `event:` line, for addEventListener(type)
    plain: bytes        # frame without it, for EventSource.onmessage


def rfc3339(timestamp_ms: int) -> str:
    moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def _header(headers, name):
    for key, value in headers or ():
        if key == name and value:
            try:
                return value.decode("utf-8") if isinstance(value, bytes) else str(value)
            except UnicodeDecodeError:
                return None
    return None


def _string_field(value, name):
    if value is None or isinstance(value, str):
        return value
    if name == "id" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidRecord(f"field {name!r} must be a string, got {type(value).__name__}")


def _dump(document: dict) -> str:
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from \ud800-style escapes
        text = json.dumps(document, separators=(",", ":"))
    return text


@dataclass(frozen=True, slots=True)
class Parsed:
    """A valid record's content, before it is given an id and framed."""
    type: str
    source: str
    timestamp_ms: int
    data: str             # the event as one line of JSON


def parse_record(topic, partition, offset, timestamp_ms, value, headers=(),
                 max_bytes=262144) -> Parsed:
    """Check and complete one Kafka record's value, or raise InvalidRecord."""
    if value is None:
        raise Tombstone("no value (tombstone)")
    if len(value) > max_bytes:
        raise InvalidRecord(f"value of {len(value)} bytes exceeds SSE_MAX_EVENT_BYTES={max_bytes}")
    try:
        body = json.loads(value, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidRecord(f"value is not JSON ({str(exc)[:80]})") from None
    if not isinstance(body, dict):
        raise InvalidRecord(f"value is JSON {type(body).__name__}, expected an object")
    event_id = _string_field(body.get("id"), "id") or f"{topic}-{partition}-{offset}"
    event_type = _string_field(body.get("type"), "type") or _header(headers, "type") or topic
    source = _string_field(body.get("source"), "source") or _header(headers, "source") or "unknown"
    if timestamp_ms is None or timestamp_ms < 0:
        timestamp_ms = 0
    timestamp = _string_field(body.get("timestamp"), "timestamp") or rfc3339(timestamp_ms)
    data = _dump({"id": event_id, "type": event_type, "source": source,
                  "timestamp": timestamp, "data": body.get("data")})
    return Parsed(event_type, source, timestamp_ms, data)


def build_event(position: Position, parsed: Parsed, sse_id: str) -> Event:
    return Event(position, parsed.type, parsed.source, parsed.timestamp_ms, sse_id,
                 framing.event_frame(sse_id, parsed.data, parsed.type),
                 framing.event_frame(sse_id, parsed.data))


def event_from_record(topic, partition, offset, timestamp_ms, value, headers=(),
                      max_bytes=262144, sse_id=None) -> Event:
    """Map one Kafka record to an Event (id: its position unless given), or raise InvalidRecord."""
    position = Position(topic, partition, offset)
    parsed = parse_record(topic, partition, offset, timestamp_ms, value, headers, max_bytes)
    return build_event(position, parsed, sse_id or position.token())
