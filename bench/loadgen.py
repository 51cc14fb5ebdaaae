"""Load-generator worker: one process, one epoll loop, hundreds of SSE clients on raw sockets.

Driven by the orchestrator (bench/bench.py) over a multiprocessing pipe:

    ("connect", url, n, sampled, inflight)  open n streams, at most `inflight` connects at once;
                                            answers ("connected", {...}) when all are settled
    ("connect", url, n, sampled, inflight, group)
                                            the same while a run is going (the reconnect storm):
                                            these streams are books of their own (`group` 1 in
                                            the result's "groups"), start counting at once and
                                            are anchored: their books start at the first event
                                            of the run they receive (history, then live), and
                                            every later one must come exactly once, in order
    ("connect_each", url, targets, sampled, inflight)
                                            the same with one request per stream: each target is
                                            (path?query, extra headers, tag); a stream with a
                                            tag reads only events whose "run" is
                                            run * TAG_SCALE + tag (the private-events run: one
                                            subject per tag), any other run counts as stale
    ("go", run, window_start, window_end)   from now on count events of `run`; ticks every 0.5 s
    ("expect", total)                       the producer sent seq 0..total-1; ticks say how many
                                            clients hold all of them
    ("expect", total, tags)                 tagged streams: event i went to tag i % tags as that
                                            tag's seq i // tags
    ("finish",)                             answers ("result", {...}) and resets every socket
    ("quit",)

Why not asyncio/aiohttp: at 1,000 clients x 500 events/s a per-event Python parser would need
more CPU than this 2-core machine has left beside the server. Here each read costs a few
microseconds: HTTP/1.1 chunked framing is undone, the text is cut at the last blank line, and
a chunk of events whose sequence numbers are contiguous and continue the client's stream is
accepted by looking at its first and last event only (`bytes.count` gives the number in
between). Anything else (a gap, a repeat, an event of another run) takes the slow path that
looks at every event. Latency is taken on every event of the *sampled* clients only (`sampled` of this
worker's, spread evenly over its connection order): all clients get the same events, so a few hundred clients give the
same percentiles at a fraction of the cost; loss and duplicates are checked on every client.
"""
from __future__ import annotations

import errno
import os
import re
import select
import socket
import struct
import time
from array import array
from urllib.parse import urlsplit

# {"run":R,"seq":S,"t":T ...}: the bench producer writes the three keys first, in this order.
EVENT = re.compile(rb'"run":\s*(\d+),\s*"seq":\s*(\d+),\s*"t":\s*(\d+)')
SEQ_MARK = b'"seq":'
RUN_MARK = b'"run":'
LINGER_RST = struct.pack("ii", 1, 0)
TAG_SCALE = 100_000     # a tagged event's "run" is run * TAG_SCALE + tag (tag < TAG_SCALE)

CONNECTING, HEADERS, STREAM, CLOSED = range(4)
TICK = 0.5


class Client:
    __slots__ = ("sock", "fd", "state", "head", "chunked", "raw", "left", "sse", "sampled",
                 "next", "recv", "dups", "gaps", "late", "stale", "last_t", "started",
                 "ready_at", "error", "eof", "tag", "run", "request", "expect", "group",
                 "anchor", "first")

    def __init__(self, sock, sampled: bool):
        self.sock, self.fd = sock, sock.fileno()
        self.state = CONNECTING
        self.head = b""
        self.chunked = False
        self.raw = b""
        self.left = 0          # >0 bytes left in the HTTP chunk, 0 size line next, -1 CRLF next
        self.sse = b""
        self.sampled = sampled
        self.next = 0          # the next sequence number expected
        self.recv = 0          # distinct events of this run received
        self.dups = 0
        self.gaps: list | None = None   # [start, end) ranges skipped over
        self.late: set | None = None    # gap members that arrived after all
        self.stale = 0         # events of another run
        self.last_t = 0        # send time (us) of the newest event received
        self.started = 0.0
        self.ready_at = 0.0
        self.error = ""
        self.eof = False
        self.tag: int | None = None     # tagged: reads only its own subject's events
        self.run = -1                   # the "run" value this client's events carry
        self.request = b""
        self.expect = -1                # events this client must get (-1: not known yet)
        self.group = 0                  # 0: the scenario's streams, 1: the storm's
        self.anchor = False             # books start at the first event of the run received
        self.first = -1                 # that event's seq (anchored clients)

    def missing(self, total: int) -> int:
        missing = max(0, total - self.next)
        if self.gaps:
            missing += sum(end - start for start, end in self.gaps) - len(self.late or ())
        return missing


def dechunk(c: Client, data: bytes) -> bytes:
    """Undo HTTP/1.1 chunked transfer coding; keeps partial size lines in c.raw."""
    buf = c.raw + data if c.raw else data
    out, i, size = [], 0, len(buf)
    while i < size:
        if c.left > 0:
            take = min(c.left, size - i)
            out.append(buf[i:i + take])
            i += take
            c.left -= take
            if c.left == 0:
                c.left = -1
        elif c.left == -1:
            if size - i < 2:
                break
            i += 2
            c.left = 0
        else:
            j = buf.find(b"\r\n", i)
            if j < 0:
                break
            length = int(buf[i:j].split(b";", 1)[0] or b"0", 16)
            i = j + 2
            if length == 0:
                c.eof = True
                i = size
                break
            c.left = length
    c.raw = buf[i:]
    return out[0] if len(out) == 1 else b"".join(out)


class Worker:
    def __init__(self, conn):
        self.conn = conn
        self.ep = select.epoll()
        self.clients: dict[int, Client] = {}
        self.gone: list[Client] = []   # streams the server closed during the run
        self.pending: list = []        # (sampled) of clients not yet started
        self.inflight = 0
        self.max_inflight = 100
        self.addr = None
        self.run = -1
        self.ws = self.we = 0          # the steady window, microseconds
        self.expect = -1
        self.reset_counters()
        self.connecting = False
        self.connect_started = 0.0
        self.ep.register(conn.fileno(), select.EPOLLIN)

    def reset_counters(self):
        self.lat = array("q")          # latencies (us) of sampled events sent inside the window
        self.lat_sent = array("q")     # their send times (us), for a narrower window later
        self.window_events = 0         # events received while inside the window
        self.window_bytes = 0
        self.events_total = 0
        self.tick_events = 0
        self.tick_maxlag = 0
        self.closed_mid = 0
        self.close_reasons: dict[str, int] = {}

    # -- connecting -----------------------------------------------------------------------------
    def start_connect(self, url: str, n: int, sampled: int, inflight: int, targets=None,
                      group: int = 0):
        """`targets`: one (path?query, headers, tag) per stream instead of `url`'s path;
        `group` > 0: streams opened during a run, anchored at their first event (the storm)."""
        parts = urlsplit(url)
        self.addr = (parts.hostname, parts.port or 80)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        host = f"{parts.hostname}:{self.addr[1]}"
        if targets is None:
            targets = [(path, (), None)] * n
        n = len(targets)
        requests = {}
        # sampled clients spread evenly over the connection order: servers that serve clients
        # in the order they came would otherwise look faster than they are
        self.pending = []
        for i, (target, headers, tag) in enumerate(targets):
            key = (target, tuple(headers))
            if key not in requests:
                requests[key] = request_bytes(host, target, headers)
            sampled_i = (i * sampled) // n < ((i + 1) * sampled) // n
            self.pending.append((sampled_i, requests[key], tag))
        self.pending.reverse()
        self.max_inflight = inflight
        self.connect_group = group
        self.connecting = True
        self.connect_started = time.time()
        self.failed = 0
        self.fail_reasons: dict[str, int] = {}
        self.last_ready = 0.0
        self.fill()

    def fill(self):
        while self.pending and self.inflight < self.max_inflight:
            sampled, request, tag = self.pending.pop()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            c = Client(sock, sampled)
            c.request, c.tag = request, tag
            c.group = self.connect_group
            c.anchor = c.group > 0
            if self.run >= 0:       # opened during a run: counts from its first event on
                c.run = self.run if tag is None else self.run * TAG_SCALE + tag
            c.started = time.time()
            self.clients[c.fd] = c
            self.inflight += 1
            self.ep.register(c.fd, select.EPOLLOUT)
            err = sock.connect_ex(self.addr)
            if err not in (0, errno.EINPROGRESS):
                self.fail(c, f"connect: {errno.errorcode.get(err, err)}")
        self.check_connected()

    def check_connected(self):
        if self.connecting and not self.pending and self.inflight == 0:
            self.connecting = False
            mine = [c for c in self.clients.values()
                    if c.state == STREAM and c.group == self.connect_group]
            self.conn.send(("connected", {
                "ok": len(mine), "failed": self.failed, "reasons": self.fail_reasons,
                "started": self.connect_started, "last_ready": self.last_ready,
                "admit_ms": array("d", ((c.ready_at - c.started) * 1000 for c in mine)).tobytes(),
            }))

    def fail(self, c: Client, reason: str):
        self.failed += 1
        self.fail_reasons[reason] = self.fail_reasons.get(reason, 0) + 1
        self.drop(c)

    def drop(self, c: Client):
        if c.state == CONNECTING or c.state == HEADERS:
            self.inflight -= 1
        c.state = CLOSED
        if c.fd in self.clients and self.clients[c.fd] is c:
            try:
                self.ep.unregister(c.fd)
            except (OSError, ValueError):
                pass
            del self.clients[c.fd]
        try:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        except OSError:
            pass
        c.sock.close()

    def on_writable(self, c: Client):
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.fail(c, f"connect: {errno.errorcode.get(err, err)}")
            return
        try:
            c.sock.send(c.request)
        except OSError as exc:
            self.fail(c, f"send: {exc.__class__.__name__}")
            return
        c.state = HEADERS
        self.ep.modify(c.fd, select.EPOLLIN)

    def on_headers(self, c: Client, data: bytes, now: float):
        c.head += data
        end = c.head.find(b"\r\n\r\n")
        if end < 0:
            if len(c.head) > 65536:
                self.fail(c, "headers too long")
            return
        head, body = c.head[:end].decode("latin-1"), c.head[end + 4:]
        c.head = b""
        status = head.split(" ", 2)[1] if " " in head else "?"
        if status != "200":
            self.fail(c, f"HTTP {status}")
            return
        lower = head.lower()
        c.chunked = "transfer-encoding: chunked" in lower
        c.state = STREAM
        c.ready_at = now
        self.inflight -= 1
        self.last_ready = max(self.last_ready, now)
        if body:
            self.on_body(c, body, now)
        if self.connecting:
            self.fill()

    # -- streaming ------------------------------------------------------------------------------
    def on_body(self, c: Client, data: bytes, now: float):
        if c.chunked:
            data = dechunk(c, data)
        buf = c.sse + data if c.sse else data
        end = buf.rfind(b"\n\n")
        if end < 0:
            c.sse = buf
            return
        part = buf[:end + 2]
        c.sse = buf[end + 2:]
        if c.run >= 0:
            self.events(c, part, now)

    def events(self, c: Client, part: bytes, now: float):
        n = part.count(SEQ_MARK)
        if not n:
            return
        now_us = int(now * 1_000_000)
        if not c.sampled and not c.anchor:
            first = EVENT.search(part)
            last = EVENT.search(part, part.rfind(RUN_MARK)) if n > 1 else first
            if (first is not None and last is not None and int(first[1]) == c.run
                    and int(last[1]) == c.run and int(first[2]) == c.next
                    and int(last[2]) - c.next + 1 == n):
                c.next += n
                c.recv += n
                c.last_t = int(last[3])
                self.count(c, n, now, now_us - c.last_t)
                return
        received = 0
        ws, we, lat = self.ws, self.we, self.lat
        for run, seq, sent in EVENT.findall(part):
            if int(run) != c.run:
                c.stale += 1
                continue
            seq, sent = int(seq), int(sent)
            if c.anchor:            # a storm stream: its books start here
                c.anchor, c.first, c.next = False, seq, seq
            if seq == c.next:
                c.next += 1
            elif seq > c.next:
                if c.gaps is None:
                    c.gaps, c.late = [], set()
                c.gaps.append((c.next, seq))
                c.next = seq + 1
            elif c.gaps and seq not in c.late and any(a <= seq < b for a, b in c.gaps):
                c.late.add(seq)
            else:
                c.dups += 1
                continue
            received += 1
            if sent > c.last_t:
                c.last_t = sent
            if c.sampled and ws <= sent <= we:
                lat.append(now_us - sent)
                self.lat_sent.append(sent)
        c.recv += received
        if received:
            self.count(c, received, now, now_us - c.last_t)

    def count(self, c: Client, n: int, now: float, lag_us: int):
        self.events_total += n
        self.tick_events += n
        if lag_us > self.tick_maxlag:
            self.tick_maxlag = lag_us
        if c.group == 0 and self.ws <= now * 1_000_000 <= self.we:
            self.window_events += n

    def on_readable(self, c: Client, now: float):
        try:
            data = c.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError as exc:
            self.closed(c, exc.__class__.__name__)
            return
        if not data:
            self.closed(c, "EOF")
            return
        if c.state == HEADERS:
            self.on_headers(c, data, now)
        else:
            self.on_body(c, data, now)
        if c.eof:
            self.closed(c, "end of stream")

    def closed(self, c: Client, reason: str):
        if c.state == STREAM:
            self.closed_mid += 1
            self.close_reasons[reason] = self.close_reasons.get(reason, 0) + 1
            c.state = CLOSED        # kept in the books: its events count, the rest are missing
            try:
                self.ep.unregister(c.fd)
            except (OSError, ValueError):
                pass
            del self.clients[c.fd]
            self.gone.append(c)
            c.sock.close()
        else:
            self.fail(c, f"closed before headers: {reason}")
            if self.connecting:
                self.fill()

    def go(self, run: int, ws: float, we: float):
        self.run, self.ws, self.we = run, int(ws * 1e6), int(we * 1e6)
        for c in self.clients.values():
            c.run = run if c.tag is None else run * TAG_SCALE + c.tag

    def set_expect(self, total: int, tags: int = 0):
        self.expect = total
        for c in [*self.clients.values(), *self.gone]:
            if c.tag is None or not tags:
                c.expect = total
            else:
                c.expect = total // tags + (1 if c.tag < total % tags else 0)

    # -- reporting ------------------------------------------------------------------------------
    def tick(self, now: float):
        open_clients = [c for c in self.clients.values() if c.state == STREAM]
        now_us = int(now * 1_000_000)
        worst = max((now_us - c.last_t for c in open_clients if c.last_t), default=0)
        complete = -1
        if self.expect >= 0:
            complete = sum(1 for c in open_clients if c.next >= c.expect and not c.gaps)
        self.conn.send(("tick", {
            "events": self.tick_events, "maxlag_us": self.tick_maxlag, "worst_lag_us": worst,
            "open": len(open_clients), "closed": self.closed_mid, "complete": complete,
            "waiting": sum(1 for c in open_clients if not c.last_t),
        }))
        self.tick_events = 0
        self.tick_maxlag = 0

    def result(self) -> dict:
        clients = [c for c in self.clients.values() if c.state == STREAM] + self.gone
        groups = sorted({c.group for c in clients} - {0})
        out = {
            **books([c for c in clients if c.group == 0]),
            "close_reasons": self.close_reasons,
            "groups": {g: books([c for c in clients if c.group == g]) for g in groups},
            "window_events": self.window_events, "events_total": self.events_total,
            "lat": self.lat.tobytes(), "lat_sent": self.lat_sent.tobytes(),
            # a connect still going (a storm cut short): where its streams are stuck
            "unsettled": {"not_started": len(self.pending),
                          "tcp_connecting": sum(1 for c in self.clients.values()
                                                if c.state == CONNECTING),
                          "awaiting_headers": sum(1 for c in self.clients.values()
                                                  if c.state == HEADERS),
                          "failed": getattr(self, "failed", 0),
                          "reasons": dict(getattr(self, "fail_reasons", {}))},
            "cpu": sum(os.times()[:2]),
        }
        for c in list(self.clients.values()):
            self.drop(c)
        self.clients.clear()
        self.gone = []
        self.pending = []           # a storm cut short: no connect goes on after the books
        self.connecting = False
        self.inflight = 0
        self.run, self.expect = -1, -1
        self.ws = self.we = 0
        self.reset_counters()
        return out

    # -- the loop -------------------------------------------------------------------------------
    def serve(self):
        ctl = self.conn.fileno()
        next_tick = 0.0
        while True:
            events = self.ep.poll(0.1 if self.run >= 0 else 0.5)
            now = time.time()
            for fd, mask in events:
                if fd == ctl:
                    if not self.command(self.conn.recv()):
                        return
                    continue
                c = self.clients.get(fd)
                if c is None:
                    continue
                if c.state == CONNECTING:
                    if mask & (select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP):
                        self.on_writable(c)
                else:
                    self.on_readable(c, now)
            if self.connecting:
                self.fill()
            if self.run >= 0 and now >= next_tick:
                next_tick = now + TICK
                self.tick(now)

    def command(self, message) -> bool:
        match message:
            case ("connect", url, n, sampled, inflight):
                self.start_connect(url, n, sampled, inflight)
            case ("connect", url, n, sampled, inflight, group):
                self.start_connect(url, n, sampled, inflight, group=group)
            case ("connect_each", url, targets, sampled, inflight):
                self.start_connect(url, len(targets), sampled, inflight, targets)
            case ("go", run, ws, we):
                self.go(run, ws, we)
            case ("expect", total):
                self.set_expect(total)
            case ("expect", total, tags):
                self.set_expect(total, tags)
            case ("finish",):
                self.conn.send(("result", self.result()))
            case ("quit",):
                return False
        return True


def books(clients) -> dict:
    """Loss, duplicates and the rest over `clients` (open ones and those the server closed).
    An anchored client (storm) that never got an event of the run misses all of them."""
    missing = [c.missing(max(0, c.expect)) for c in clients]
    return {
        "held": sum(1 for c in clients if c.state == STREAM),
        "closed_mid": sum(1 for c in clients if c.state != STREAM),
        "missing": sum(missing), "clients_missing": sum(1 for m in missing if m),
        # of them, the events after each client's last one: not delivered yet (behind), not a gap
        "behind": sum(max(0, c.expect - c.next) for c in clients),
        "dups": sum(c.dups for c in clients), "stale": sum(c.stale for c in clients),
        "received": sum(c.recv for c in clients),
        "sampled_clients": sum(1 for c in clients if c.sampled),
        "clients": len(clients),
        "first_seq_min": min((c.first for c in clients if c.first >= 0), default=None),
        "first_seq_max": max((c.first for c in clients if c.first >= 0), default=None),
        # admission: connect -> response headers, per stream, and the span over all of them
        "started_min": min((c.started for c in clients), default=None),
        "ready_max": max((c.ready_at for c in clients), default=None),
        "admit_ms": array("d", ((c.ready_at - c.started) * 1000 for c in clients)).tobytes(),
    }


def request_bytes(host: str, target: str, headers=()) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return (f"GET {target} HTTP/1.1\r\nHost: {host}\r\n"
            "Accept: text/event-stream\r\nCache-Control: no-cache\r\n"
            f"User-Agent: sse-bench\r\n{extra}\r\n").encode()


def main(conn):
    try:
        Worker(conn).serve()
    except KeyboardInterrupt:
        pass
