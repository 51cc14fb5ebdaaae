"""Server-Sent Events wire format, written by hand with the standard library.

Every field value is cleaned of CR, LF, NUL and the other characters some clients take for a
line end (U+0085, U+2028 and U+2029 end lines for parsers built on Python's `str.splitlines`),
so that no input can end a line early and inject a field of its own. Event data is JSON, where
those characters can only stand in strings: there they are written as `\\u` escapes, which
mean the same.

Only events and the stream's position end a block with a blank line. Comments (heartbeats,
the client id, the closing reason) and `retry:` are single lines that end no block: per the
specification they dispatch nothing either way, but several client libraries (httpx-sse,
fetch-event-source, r3labs/sse) hand every blank-line-ended block to the application as a
message, empty ones included. A comment line between events simply joins the next block.
"""
from __future__ import annotations

import json
import random

_BEYOND_C0 = (0x7F, 0x85, 0x2028, 0x2029)      # DEL, and line ends to str.splitlines
_CONTROL = {code: "_" for code in (*range(32), *_BEYOND_C0)}
_JSON_ESCAPES = {code: "_" for code in range(32)} | {code: f"\\u{code:04x}" for code in _BEYOND_C0}


def clean(value: str) -> str:
    """A value that is safe on one SSE field line."""
    if value.isprintable():     # the usual case (no control character): one scan, no copy
        return value
    return value.translate(_CONTROL)


def json_line(text: str) -> str:
    """JSON text that is safe on one `data:` line and means the same."""
    if text.isprintable():
        return text
    return text.translate(_JSON_ESCAPES)


def event_frame(sse_id: str, data: str, event_type: str | None = None) -> bytes:
    """One event: optional `event:`, one `data:` line, then `id:` and the blank line.

    The id comes last: some clients (@microsoft/fetch-event-source; r3labs/sse with what
    trails at a stream's end) take an id as soon as its line is complete, before the blank
    line that dispatches the event. A connection cut inside a frame then has them resume
    after an event they never received, unless at most that blank line was missing."""
    head = f"event: {clean(event_type)}\n" if event_type is not None else ""
    return (head + f"data: {json_line(data)}\n" + id_end(sse_id)).encode("utf-8", "replace")


def id_end(sse_id: str) -> str:
    """An event frame's last line, `id:`, and the blank line that ends the frame."""
    return f"id: {clean(sse_id)}\n\n"


def data_block(data: str) -> bytes:
    """The middle of an event's frame, the same whatever its id: the `data:` line."""
    return f"data: {json_line(data)}\n".encode("utf-8", "replace")


def event_frames(sse_id: str, event_type: str, block: bytes) -> tuple[bytes, bytes]:
    """An event's two frames from its data_block: (with `event:` line, without); the same
    bytes as event_frame's, the data encoded once."""
    end = id_end(sse_id).encode("utf-8", "replace")
    return type_line(event_type) + block + end, block + end


_TYPE_LINES: dict[str, bytes] = {}
KEPT_TYPES = 4096           # `event:` lines kept, of types up to KEPT_TYPE_LENGTH characters
KEPT_TYPE_LENGTH = 256


def type_line(event_type: str) -> bytes:
    """`event: <type>` as bytes, kept for the types seen (a topic has few, and short ones)."""
    line = _TYPE_LINES.get(event_type)
    if line is None:
        line = f"event: {clean(event_type)}\n".encode("utf-8", "replace")
        if len(_TYPE_LINES) < KEPT_TYPES and len(event_type) <= KEPT_TYPE_LENGTH:
            _TYPE_LINES[event_type] = line
    return line


def comment(text: str) -> bytes:
    """A comment line, ending no block: ignored by clients, keeps proxies and sockets awake."""
    return f": {clean(text)}\n".encode("utf-8", "replace")


def retry(milliseconds: int, jitter=None) -> bytes:
    """The reconnect delay, as a line of the stream's opening block. With `jitter` (a function
    of the delay, e.g. `random.randint(0, ms // 4)`), each client gets its own delay, so a mass
    disconnect does not come back as one wave."""
    extra = jitter(int(milliseconds)) if jitter is not None else 0
    return f"retry: {int(milliseconds) + int(extra)}\n".encode("ascii")


def quarter_jitter(milliseconds: int) -> int:
    """Up to a quarter of the delay more, uniformly (random.randint's Python steps cost
    more than the rest of the opening block)."""
    return int(random.random() * (max(0, milliseconds // 4) + 1))


def position(sse_id: str) -> bytes:
    """An id-only block: sets the client's last event id without dispatching an event, so a
    stream cut before its first event still resumes exactly where it started."""
    return f"id: {clean(sse_id)}\n\n".encode("utf-8", "replace")


def gap(sse_id: str, gaps) -> bytes:
    """The `gap` event: where a stream could not resume exactly, per partition, and why.
    `gaps`: (reason, (topic, partition), requested offset, resumed offset) each."""
    body = {"reason": gaps[0][0], "partitions": [
        {"topic": t, "partition": p, "requested_offset": wanted, "resumed_offset": resumed,
         "reason": reason} for reason, (t, p), wanted, resumed in gaps]}
    return event_frame(sse_id, json.dumps(body, separators=(",", ":")), "gap")


def topics_changed(opening: bytes) -> bytes:
    """The `gap` of a stream whose id came from a gateway with other KAFKA_TOPICS: it starts
    over. It names no partition, and carries the stream's opening id (`opening`, an id-only
    block, or nothing: a `since` stream's place is its URL), as every gap does."""
    return (b'event: gap\ndata: {"reason":"topics_changed","partitions":[]}\n'
            + (opening or b"\n"))


def auth_expired(reason: str) -> bytes:
    """The `auth-expired` event that ends a stream whose credential ran out: no id (the client
    resumes from its last event), JSON data {"reason": ...}. The page fetches a fresh ticket
    and reconnects."""
    data = json.dumps({"reason": reason}, separators=(",", ":"))
    return f"event: auth-expired\ndata: {json_line(data)}\n\n".encode("utf-8", "replace")


HEARTBEAT = comment("heartbeat")
