"""Server-Sent Events wire format, written by hand with the standard library.

Every field value is cleaned of CR, LF and NUL so that no input can end a line early
and inject a field of its own.

Only events and the stream's position end a block with a blank line. Comments (heartbeats,
the client id, the closing reason) and `retry:` are single lines that end no block: per the
specification they dispatch nothing either way, but several client libraries (httpx-sse,
fetch-event-source, r3labs/sse) hand every blank-line-ended block to the application as a
message, empty ones included. A comment line between events simply joins the next block.
"""
from __future__ import annotations

import json
import random

_CONTROL = {code: "_" for code in range(32)} | {0x7F: "_"}


def clean(value: str) -> str:
    """A value that is safe on one SSE field line."""
    return value.translate(_CONTROL)


def event_frame(sse_id: str, data: str, event_type: str | None = None) -> bytes:
    """One event: `id:`, optional `event:`, one `data:` line, blank line."""
    lines = [f"id: {clean(sse_id)}\n"]
    if event_type is not None:
        lines.append(f"event: {clean(event_type)}\n")
    lines.append(f"data: {clean(data)}\n\n")
    return "".join(lines).encode("utf-8", "replace")   # lone surrogates become "?"


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
    """Up to a quarter of the delay more, uniformly."""
    return random.randint(0, max(0, milliseconds // 4))


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


def auth_expired(reason: str) -> bytes:
    """The `auth-expired` event that ends a stream whose credential ran out: no id (the client
    resumes from its last event), JSON data {"reason": ...}. The page fetches a fresh ticket
    and reconnects."""
    data = json.dumps({"reason": reason}, separators=(",", ":"))
    return f"event: auth-expired\ndata: {clean(data)}\n\n".encode("utf-8", "replace")


HEARTBEAT = comment("heartbeat")
