"""The door's bookkeeping of unfinished requests (web/door.py): caps, eviction, deadlines."""
import ipaddress
import json
import logging
import socket
import time
from types import SimpleNamespace

import gevent
import gevent.socket
import pytest

from web.door import Door, DoorLimits, address_key
from web.worker import door_limits
from actors.settings import Settings


def door(timeout=10.0, per_address=2, total=4, exempt=()):
    return Door(DoorLimits(timeout=timeout, per_address=per_address, total=total, exempt=exempt))


def test_one_address_is_capped_and_others_still_get_in():
    d = door()
    assert d.enter("a1", "10.0.0.1", 0.0) == (True, None)
    assert d.enter("a2", "10.0.0.1", 0.0) == (True, None)
    assert d.enter("a3", "10.0.0.1", 0.0) == (False, None)
    assert d.enter("b1", "10.0.0.2", 0.0) == (True, None)
    assert (d.refused, len(d), d.holding("10.0.0.1")) == (1, 3, 2)


def test_a_finished_head_frees_its_place():
    d = door()
    d.enter("a1", "10.0.0.1", 0.0)
    d.enter("a2", "10.0.0.1", 0.0)
    d.done("a1")
    d.done("a1")                                      # idempotent
    assert d.enter("a3", "10.0.0.1", 0.0) == (True, None)
    assert d.holding("10.0.0.1") == 2


def test_when_the_worker_is_full_the_oldest_pending_connection_goes():
    d = door(per_address=10, total=3)
    for n, conn in enumerate(["old", "mid", "new"]):
        d.enter(conn, f"10.0.0.{n}", float(n))
    assert d.enter("newcomer", "10.0.0.9", 5.0) == (True, "old")
    assert (len(d), d.evicted, d.holding("10.0.0.0")) == (3, 1, 0)


def test_heads_past_the_deadline_expire_oldest_first():
    d = door(timeout=10.0, per_address=10)
    d.enter("first", "10.0.0.1", 0.0)
    d.enter("second", "10.0.0.1", 3.0)
    d.enter("done", "10.0.0.1", 4.0)
    d.done("done")
    assert d.expired(9.9) == []
    assert d.expired(10.0) == ["first"]
    assert d.expired(20.0) == ["second"]
    assert (len(d), d.timed_out, d.holding("10.0.0.1")) == (0, 2, 0)


def test_trusted_proxies_are_not_capped_per_address_but_count_in_the_total():
    d = door(per_address=1, total=3, exempt=(ipaddress.ip_network("10.1.0.0/16"),))
    assert d.enter("p1", "10.1.2.3", 0.0) == (True, None)
    assert d.enter("p2", "10.1.2.3", 0.0) == (True, None)
    assert d.enter("p3", "10.1.2.3", 0.0) == (True, None)
    assert d.enter("p4", "10.1.2.3", 0.0) == (True, "p1")


def test_drain_forgets_everything():
    d = door(per_address=10)
    d.enter("a", "10.0.0.1", 0.0)
    d.enter("b", "10.0.0.2", 0.0)
    assert d.drain() == ["a", "b"] and len(d) == 0 and d.holding("10.0.0.1") == 0


def test_address_key_ipv4_ipv6_and_mapped():
    assert address_key(("127.0.0.2", 5555)) == "127.0.0.2"
    assert address_key(("2001:db8::1", 1, 0, 0)) == address_key(("2001:db8::ffff", 2, 0, 0)) \
        == "2001:db8::/64"
    assert address_key(("::ffff:10.0.0.1", 1, 0, 0)) == "10.0.0.1"
    assert address_key("unix-socket") == "unix-socket"


def test_limits_come_from_the_settings():
    settings = Settings.from_env({"HTTP_HEADER_TIMEOUT_SECONDS": "3",
                                  "HTTP_MAX_PENDING_PER_IP": "7",
                                  "HTTP_MAX_PENDING": "99", "TRUSTED_PROXIES": "10.0.0.0/8"},
                                 env_file=None)
    limits = door_limits(settings)
    assert (limits.timeout, limits.per_address, limits.total) == (3.0, 7, 99)
    assert [str(n) for n in limits.exempt] == ["10.0.0.0/8"]
    assert door_limits(Settings.defaults()) == DoorLimits(10.0, 50, 1000, ())


def test_a_bad_limit_stops_the_start_with_a_clear_message():
    import pytest
    from actors.settings import SettingsError
    with pytest.raises(SettingsError, match="HTTP_HEADER_TIMEOUT_SECONDS='0'"):
        Settings.from_env({"HTTP_HEADER_TIMEOUT_SECONDS": "0"}, env_file=None)


def test_a_workers_frozen_gunicorn_settings_read_the_same_without_getattr(monkeypatch):
    from gunicorn.config import Config

    from web.worker import freeze_settings
    cfg = Config()
    cfg.set("keepalive", 0)
    cfg.set("forwarded_allow_ips", "10.0.0.1")
    freeze_settings(cfg)
    asked = []
    original = Config.__getattr__
    monkeypatch.setattr(Config, "__getattr__", lambda self, name: asked.append(name)
                        or original(self, name))
    for name, setting in cfg.settings.items():
        if not hasattr(Config, name):         # worker_class and a few more are properties
            assert getattr(cfg, name) == setting.get()
    assert (cfg.keepalive, cfg.forwarded_allow_ips, bool(cfg.is_ssl)) == (0, ["10.0.0.1"], False)
    assert asked == []


def test_the_date_header_is_formatted_once_a_second_and_reads_as_gunicorns(monkeypatch):
    from gunicorn import util

    from web.worker import per_second
    clock = [1_700_000_000.25]
    monkeypatch.setattr("web.worker.time.time", lambda: clock[0])
    formatted = []
    cached = per_second(lambda t=None: formatted.append(t) or util.http_date(t))
    first = cached()
    clock[0] = 1_700_000_000.99
    assert cached() == first == util.http_date(1_700_000_000.25) == util.http_date(1_700_000_000)
    clock[0] = 1_700_000_001.0
    assert cached() == util.http_date(1_700_000_001) != first
    assert formatted == [1_700_000_000, 1_700_000_001]
    assert cached(86400) == util.http_date(86400) == "Fri, 02 Jan 1970 00:00:00 GMT"


def test_the_per_address_key_is_the_same_for_every_port_of_a_peer():
    assert address_key(("10.0.0.7", 1234)) == address_key(("10.0.0.7", 4321)) == "10.0.0.7"
    assert address_key(("::ffff:10.0.0.7", 1)) == "10.0.0.7"
    assert address_key(("2001:db8::1", 1)) == "2001:db8::/64"


def test_a_trusted_ipv6_proxy_is_exempt_by_its_own_address_not_its_64():
    """IPv6 peers are counted per /64, but trust is by the proxy's own address: a proxy listed
    as one address (::1, 2001:db8::5) used to be capped like any client (429 after the cap)."""
    d = door(per_address=1, total=10, exempt=(ipaddress.ip_network("2001:db8::5/128"),
                                              ipaddress.ip_network("::1/128"),
                                              ipaddress.ip_network("10.1.0.0/16")))
    assert [d.enter(f"p{n}", ("2001:db8::5", 443, 0, 0), 0.0)[0] for n in range(3)] == [True] * 3
    assert [d.enter(f"l{n}", "::1", 0.0)[0] for n in range(3)] == [True] * 3
    assert [d.enter(f"m{n}", "::ffff:10.1.2.3", 0.0)[0] for n in range(3)] == [True] * 3
    assert [d.enter(f"n{n}", "2001:db8::6", 0.0)[0] for n in range(2)] == [True, False]
    assert d.holding("2001:db8::/64") == 1



def test_gunicorns_own_refusals_are_json_with_credentials_masked():
    """gunicorn answers what it cannot parse with util.write_error: an HTML page, and its
    message may quote the request line. The worker's version answers like the app."""
    import json
    import socket

    from web.worker import write_json_error
    line = "Invalid Request Line 'GET /events?ticket=s3cret&x=1 HTTP/1.1 extra'"
    cases = [(400, "Bad Request", line, "bad_request"),
             (431, "Request Header Fields Too Large", "Error parsing headers: 'too large'",
              "request_header_fields_too_large"),
             (414, "URI Too Long", "Request Line is too large (5000 > 4094)", "uri_too_long"),
             (501, "Bad Request", "Unsupported transfer coding: 'gzip'", "not_implemented"),
             (500, "Internal Server Error", "", "internal_error")]
    messages = []
    for status, reason, mesg, code in cases:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            write_json_error(ours, status, reason, mesg)
            head, _, body = theirs.recv(65536).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].split(" ", 2)[:2] == ["HTTP/1.1", str(status)]
        assert "Content-Type: application/json" in lines and "Connection: close" in lines
        assert f"Content-Length: {len(body)}" in lines
        # RFC 9110 6.6.1: an origin server with a clock sends Date (these had none)
        assert any(line.startswith("Date: ") and line.endswith(" GMT") for line in lines), lines
        answer = json.loads(body)
        assert answer["error"] == code and answer["message"]
        messages.append(answer["message"])
    assert lines[0] == "HTTP/1.1 500 Internal Server Error"
    assert "ticket=***&x=1" in messages[0] and "s3cret" not in messages[0]
    assert messages[3] == "Unsupported transfer coding: 'gzip'"


@pytest.mark.parametrize("status, mesg, advice", [
    (414, "Request Line is too large (4133 > 4094)", "shorten the URL"),
    (431, "Error parsing headers: 'limit request headers fields size'", "fewer or smaller"),
    (417, "Unable to comply with expectation: 'foo'", "Expect: 100-continue")])
def test_gunicorns_refusals_of_a_request_too_large_say_what_to_do(status, mesg, advice):
    """A filter over the request line's limit got 'Request Line is too large (4133 > 4094)'
    and no word of what to send instead (a README walk); the body is as compact as the app's."""
    import json
    import socket

    from web.worker import write_json_error
    ours, theirs = socket.socketpair()
    with ours, theirs:
        write_json_error(ours, status, "", mesg)
        _, _, body = theirs.recv(65536).partition(b"\r\n\r\n")
    message = json.loads(body)["message"]
    assert message.startswith(mesg + ": ") and advice in message, message
    assert b'","' in body and b'", "' not in body


def test_a_refusal_of_a_head_request_written_by_the_worker_has_no_body():
    """RFC 9110 9.3.2: a HEAD answer has no content. `HEAD /events` without Host got the
    400's 93 bytes of JSON after its head, which a strict client reads as garbage."""
    import socket

    from web.worker import write_json_error
    ours, theirs = socket.socketpair()
    with ours, theirs:
        write_json_error(ours, 400, "Bad Request", "an HTTP/1.1 request needs a Host header",
                         head_only=True)
        ours.close()
        answer = b""
        while chunk := theirs.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert body == b"" and b"Content-Length: " in head and b"\r\nDate: " in head


def test_a_proxy_protocol_header_is_refused_saying_so():
    """HAProxy's send-proxy (nginx's proxy_protocol) before the request: the answer quoted a
    request line of the proxy's own addresses and never said what was wrong."""
    import json
    import socket

    from web.worker import write_json_error
    line = ("Invalid Request Line 'Invalid HTTP request line: 'PROXY TCP4 10.0.0.5 10.0.0.11 "
            "35450 8084''")
    ours, theirs = socket.socketpair()
    with ours, theirs:
        write_json_error(ours, 400, "Bad Request", line)
        _, _, body = theirs.recv(65536).partition(b"\r\n\r\n")
    message = json.loads(body)["message"]
    assert "PROXY protocol" in message and "send-proxy" in message
    assert "10.0.0.5" not in message and "35450" not in message


# -- the worker at the door (web/worker.GatewayWorker) -----------------------------------------

@pytest.fixture
def door_worker(monkeypatch):
    """A GatewayWorker as its run() sets it up, gunicorn's own loop left out, its sweeper
    running (every 10 ms): (worker, served), `served` the connections handed to gunicorn."""
    from gevent.hub import Hub
    from gunicorn import util as gunicorn_util
    from gunicorn.config import Config
    from gunicorn.http import parser

    from web import worker
    for owner, name in ((gunicorn_util, "http_date"), (gunicorn_util, "write_error"),
                        (parser.RequestParser, "mesg_class"), (Hub, "print_exception"),
                        (worker, "_cors")):
        monkeypatch.setattr(owner, name, getattr(owner, name))      # restored after
    monkeypatch.setattr(worker.GeventWorker, "run", lambda self: None)
    monkeypatch.setattr(worker, "_raise_file_limit", lambda needed: None)
    monkeypatch.setattr(worker, "SWEEP_SECONDS", 0.01)
    served = []
    monkeypatch.setattr(worker.GeventWorker, "handle",
                        lambda self, listener, client, addr: served.append(client))
    gw = object.__new__(worker.GatewayWorker)
    gw.cfg, gw.sockets, gw.worker_connections, gw.alive = Config(), [], 1000, True
    gw.log = SimpleNamespace()
    gw.wsgi = SimpleNamespace(config={"SETTINGS": Settings.defaults(
        http_max_pending_per_ip=1, cors_allowed_origins=("*",))})
    gw.run()
    yield gw, served
    gw.door.drain()                                     # nothing to wait for on the way out
    gw.alive = False
    gevent.sleep(0.05)                                  # the sweeper ends


def _unfinished_closed(reason: str) -> float:
    from web.metrics import UNFINISHED_CLOSED
    return UNFINISHED_CLOSED.labels(reason)._value.get()


def _read_all(sock) -> bytes:
    """All the peer wrote, up to its close; raises ConnectionResetError on a reset."""
    sock.settimeout(2)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def test_a_connection_past_the_per_address_cap_reads_a_whole_429_and_is_never_served(
        door_worker):
    """HTTP_MAX_PENDING_PER_IP: the client that already sent its request got a reset (its
    bytes unread at the close), which loses the 429 and its Retry-After; a browser on another
    origin must be allowed to read it; and the refused connection is not handed on."""
    gw, served = door_worker
    held, held_peer = socket.socketpair()
    gw.door.enter(held, ("10.0.0.1", 1), time.monotonic())      # the address's one pending
    ours, theirs = socket.socketpair()
    theirs.sendall(b"GET /events HTTP/1.1\r\nHost: gateway\r\n\r\n")
    before = _unfinished_closed("too_many_pending_requests")
    try:
        gw.handle(None, ours, ("10.0.0.1", 2))
        head, _, body = _read_all(theirs).partition(b"\r\n\r\n")
    finally:
        for sock in (held, held_peer, ours, theirs):
            sock.close()
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 429 Too Many Requests", lines
    assert "Retry-After: 1" in lines and "Access-Control-Allow-Origin: *" in lines, lines
    assert json.loads(body)["error"] == "too_many_pending_requests"
    assert served == [] and len(gw.door) == 1
    assert _unfinished_closed("too_many_pending_requests") == before + 1


def test_a_head_request_without_host_is_a_400_without_a_body_and_no_longer_pending(
        door_worker):
    """RFC 9112 3.2 and RFC 9110 9.3.2: `HEAD /events` over HTTP/1.1 without Host is 400, and
    a HEAD answer has no content (a strict client reads a body as the next answer's start)."""
    gw, served = door_worker
    ours, theirs = socket.socketpair()
    gw.door.enter(ours, ("10.0.0.1", 1), time.monotonic())
    request = SimpleNamespace(version=(1, 1), method="HEAD", headers=[("USER-AGENT", "curl")])
    try:
        assert gw.handle_request(None, request, ours, ("10.0.0.1", 1)) is False
        ours.close()
        head, _, body = _read_all(theirs).partition(b"\r\n\r\n")
    finally:
        ours.close()
        theirs.close()
    assert head.startswith(b"HTTP/1.1 400 ") and b"Content-Length: " in head, head
    assert body == b""
    assert len(gw.door) == 0        # its head is complete: the sweeper's 408 is not for it


def test_the_sweeper_outlives_an_error_and_reports_what_it_closed(door_worker, monkeypatch,
                                                                   caplog):
    """One bad socket must not end the sweeper: without it no request head ever times out
    again (slowloris fills the pool), and the periodic report line stops too."""
    from web import worker
    gw, _ = door_worker
    monkeypatch.setattr(worker, "REPORT_SECONDS", 0.0)             # a report at every sweep
    caplog.set_level(logging.WARNING, logger="web.worker")
    expired, failed = gw.door.expired, []

    def fails_once(now):
        if not failed:
            failed.append(now)
            raise RuntimeError("a socket gone odd")
        return expired(now)
    monkeypatch.setattr(gw.door, "expired", fails_once)
    ours, theirs = gevent.socket.socketpair()
    gw.door.enter(ours, ("10.0.0.1", 1), time.monotonic() - 60)    # long past its deadline
    before = _unfinished_closed("request_timeout")
    try:
        answer = _read_all(theirs)
    finally:
        ours.close()
        theirs.close()
    assert failed and answer.startswith(b"HTTP/1.1 408 "), answer
    assert _unfinished_closed("request_timeout") == before + 1
    said = [r.getMessage() for r in caplog.records if r.name == "web.worker"]
    assert any("sweeper: carrying on" in line for line in said), said
    assert any(line.startswith("unfinished requests: 1 closed after HTTP_HEADER_TIMEOUT")
               for line in said), said


def test_the_report_counts_what_happened_since_the_last_one(door_worker, caplog):
    """Each minute's line says that minute's closes (not the totals since the start), also
    when the only ones were evictions over HTTP_MAX_PENDING, and gunicorn's count of invalid
    requests left unlogged is reported with it."""
    gw, _ = door_worker
    unlogged = []
    gw.log = SimpleNamespace(report_unlogged=lambda: unlogged.append(True))
    caplog.set_level(logging.WARNING, logger="web.worker")
    gw.door.timed_out, gw.door.refused = 5, 3
    reported = gw._report((4, 3, 0))
    gw.door.evicted = 2
    gw._report(gw._report(reported))                    # the second of these: nothing new
    said = [r.getMessage() for r in caplog.records if r.name == "web.worker"]
    assert [line.split(" (")[0] for line in said] == [
        "unfinished requests: 1 closed after HTTP_HEADER_TIMEOUT_SECONDS=10, 0 refused over "
        "HTTP_MAX_PENDING_PER_IP=1, 0 closed over HTTP_MAX_PENDING=1000",
        "unfinished requests: 0 closed after HTTP_HEADER_TIMEOUT_SECONDS=10, 0 refused over "
        "HTTP_MAX_PENDING_PER_IP=1, 2 closed over HTTP_MAX_PENDING=1000"], said
    assert unlogged == [True] * 3


def test_unacknowledged_data_ends_a_connection_after_two_heartbeats_at_least_10_s():
    """README: a client that vanished is noticed when data stays unacknowledged for twice
    SSE_HEARTBEAT_SECONDS, at least 10 s (TCP_USER_TIMEOUT); at one heartbeat a link that
    stalls for a moment is cut, and a client that vanished is noticed no sooner."""
    from web.worker import unacked_limit_ms
    assert unacked_limit_ms(Settings.defaults(sse_heartbeat_seconds=30)) == 60_000
    assert unacked_limit_ms(Settings.defaults(sse_heartbeat_seconds=2)) == 10_000
