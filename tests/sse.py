"""A Server-Sent Events client written with the standard library, for the tests.

It follows the WHATWG parsing rules (line endings, comments, the optional space after the
colon, multi-line data) so a test sees exactly what a browser's EventSource would see.
"""
from __future__ import annotations

import codecs
import re
import socket
import time
from urllib.parse import urlsplit

_LINES = re.compile(r"\r\n|\r|\n")


class SSEParser:
    """Feed bytes, get events as dicts: id, event, data (and the comments seen)."""

    def __init__(self):
        self._buffer = ""
        self._decoder = None
        self._reset()
        self.comments: list[str] = []
        self.retry: int | None = None
        self.last_id = ""           # as EventSource's lastEventId: set when a block ends
        self._id_buffer = ""

    def _reset(self):
        self._data, self._event = [], None

    def feed(self, chunk: bytes) -> list[dict]:
        if self._decoder is None:
            self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._buffer += self._decoder.decode(chunk)
        *lines, self._buffer = _LINES.split(self._buffer)
        events = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str):
        if line == "":
            self.last_id = self._id_buffer      # a cut before the blank line leaves it as it was
            if not self._data:
                self._event = None
                return None
            event = {"id": self.last_id, "event": self._event or "message",
                     "data": "\n".join(self._data)}
            self._reset()
            return event
        if line.startswith(":"):
            self.comments.append(line[1:].lstrip(" "))
            return None
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._id_buffer = value
        elif field == "retry" and value.isdigit():
            self.retry = int(value)
        return None


def parse_stream(raw: bytes) -> list[dict]:
    return SSEParser().feed(raw)


class _Chunked:
    """Incremental decoder of HTTP/1.1 chunked transfer encoding."""

    def __init__(self):
        self.buffer = b""
        self.remaining = 0      # bytes left in the current chunk (+2 for its CRLF)
        self.done = False

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        out = []
        while self.buffer and not self.done:
            if self.remaining == 0:
                line_end = self.buffer.find(b"\r\n")
                if line_end < 0:
                    break
                size = int(self.buffer[:line_end].split(b";")[0], 16)
                self.buffer = self.buffer[line_end + 2:]
                if size == 0:
                    self.done = True
                    break
                self.remaining = size + 2
            take = self.buffer[:self.remaining]
            self.buffer = self.buffer[len(take):]
            self.remaining -= len(take)
            out.append(take[:max(0, len(take) - max(0, 2 - self.remaining))])
        return b"".join(out)


class SSEClient:
    """One HTTP/1.1 stream over a raw socket; read events with a deadline."""

    def __init__(self, url: str, headers=None, timeout=10.0, method="GET"):
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.hostname}:{parts.port}",
                 "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed before headers: {head!r}")
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {}
        for line in header_lines:
            key, _, value = line.partition(":")
            self.headers[key.strip().title()] = value.strip()
        self.chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
        self._decoder = _Chunked() if self.chunked else None
        self.parser = SSEParser()
        self.events: list[dict] = []
        self.body = b""
        self.closed = False
        self._consume(rest)

    def _consume(self, raw: bytes) -> None:
        data = self._decoder.feed(raw) if self._decoder else raw
        if self._decoder and self._decoder.done:
            self.closed = True
        self.body += data
        self.events.extend(self.parser.feed(data))

    def read_until(self, predicate, timeout=10.0) -> list[dict]:
        """Read until predicate(events) is true, the stream ends, or the deadline passes."""
        deadline = time.monotonic() + timeout
        while not predicate(self.events) and not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.sock.settimeout(min(remaining, 1.0))
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                self.closed = True
                break
            if not chunk:
                self.closed = True
                break
            self._consume(chunk)
        return self.events

    def read_count(self, count: int, timeout=10.0) -> list[dict]:
        return self.read_until(lambda evs: len(evs) >= count, timeout)

    def read_for(self, seconds: float) -> list[dict]:
        return self.read_until(lambda evs: False, seconds)

    def json(self):
        self.read_until(lambda evs: False, 2)
        import json
        return json.loads(self.body)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.closed = True
