"""Server-Sent Events wire format, written by hand with the standard library.

Every field value is cleaned of CR, LF and NUL so that no input can end a line early
and inject a field of its own.
"""
from __future__ import annotations

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
    """A comment line: ignored by EventSource, keeps proxies and sockets awake."""
    return f": {clean(text)}\n\n".encode("utf-8", "replace")


def retry(milliseconds: int) -> bytes:
    return f"retry: {int(milliseconds)}\n\n".encode("ascii")


HEARTBEAT = comment("heartbeat")
