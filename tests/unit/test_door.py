"""The door's bookkeeping of unfinished requests (web/door.py): caps, eviction, deadlines."""
import ipaddress

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
    settings = Settings.from_env({"HTTP_HEADER_TIMEOUT_SECONDS": "3", "HTTP_MAX_PENDING_PER_IP": "7",
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
