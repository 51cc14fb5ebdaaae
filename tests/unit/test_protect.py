"""web/address.py, web/cors.py and web/admission.py: the admission of /events and /stats,
through Flask's test client and the core's real gateway.

The limiter is a real RateLimiterActor, built and driven directly (not started); the broker
and history are fake refs.
"""
import ipaddress
import threading
from types import SimpleNamespace

import pytest

from actors.client import every_actor
from actors.gateway import Gateway
from actors.limiter import RateLimiterActor
from actors.messages import GetHistorySize, GetLimiterStats, GetStats, Subscribe
from actors.replies import Stats
from actors.settings import Settings
from tests.fakes import DirectRef, FakeRef, stop_all
from web import create_app
from web.address import client_address, limit_key
from web.cors import cors_headers


def _nets(*cidrs):
    return tuple(ipaddress.ip_network(c) for c in cidrs)


PROXIES = _nets("10.0.0.0/8", "fd00::/8")


@pytest.mark.parametrize("peer, forwarded, expected", [
    ("203.0.113.7", "198.51.100.1", "203.0.113.7"),            # untrusted peer: header ignored
    ("10.0.0.2", None, "10.0.0.2"),                             # trusted, no header
    ("10.0.0.2", "198.51.100.1", "198.51.100.1"),
    ("10.0.0.2", "1.1.1.1, 198.51.100.1", "198.51.100.1"),      # right-most untrusted wins
    ("10.0.0.2", "1.1.1.1, 198.51.100.1, 10.0.0.9", "198.51.100.1"),   # skipping our proxies
    ("10.0.0.2", "10.0.0.8, 10.0.0.9", "10.0.0.8"),             # all trusted: the left-most
    ("10.0.0.2", "1.1.1.1, garbage, 10.0.0.9", "10.0.0.9"),     # nothing left of garbage
    ("10.0.0.2", "not an address", "10.0.0.2"),
    ("10.0.0.2", "", "10.0.0.2"),
    ("10.0.0.2", "198.51.100.1:4711", "198.51.100.1"),
    ("10.0.0.2", "[2001:db8::1]:443", "2001:db8::1"),
    ("fd00::1", "2001:db8::5", "2001:db8::5"),
    ("::ffff:10.0.0.2", "198.51.100.1", "198.51.100.1"),        # v4-mapped peer
    ("", "198.51.100.1", ""),                                   # unix socket: no peer
])
def test_client_address(peer, forwarded, expected):
    assert client_address(peer, forwarded, PROXIES) == expected


def test_forwarded_headers_are_never_trusted_by_default():
    assert client_address("127.0.0.1", "198.51.100.1", ()) == "127.0.0.1"


@pytest.fixture
def no_warnings_yet(monkeypatch):
    from web import address
    monkeypatch.setattr(address, "_warned", set())      # as in a new worker


def test_a_forwarded_header_not_believed_is_said_once_per_peer(caplog, no_warnings_yet):
    """Behind a proxy that TRUSTED_PROXIES does not list (unset, or a CIDR that misses it)
    every client counts as the proxy: the log says so, once per peer, naming the variable."""
    caplog.set_level("WARNING", logger="web.address")
    assert client_address("127.0.0.9", "198.51.100.1", ()) == "127.0.0.9"
    assert client_address("127.0.0.9", "198.51.100.2", ()) == "127.0.0.9"
    assert client_address("203.0.113.77", "198.51.100.1", PROXIES) == "203.0.113.77"
    client_address("203.0.113.78", None, ())                   # no header: nothing to say
    client_address("10.0.0.2", "198.51.100.1", PROXIES)        # believed
    lines = [r.getMessage() for r in caplog.records if r.name == "web.address"]
    assert len(lines) == 2, lines
    assert "127.0.0.9" in lines[0] and "TRUSTED_PROXIES" in lines[0]
    assert "203.0.113.77" in lines[1]


def test_strangers_cannot_use_up_the_warnings_about_forwarded_headers(caplog, no_warnings_yet):
    """Any client may send X-Forwarded-For: with TRUSTED_PROXIES unset, a gateway reached
    directly said 'add it there' for each of 16 strangers; with it set, one IPv6 /64 could
    spend all 16 places before the real, unlisted proxy was seen."""
    caplog.set_level("WARNING", logger="web.address")
    for i in range(20):
        client_address(f"198.51.100.{i + 1}", "192.0.2.1", ())
    for i in range(20):
        client_address(f"2001:db8:1:2::{i + 1:x}", "192.0.2.1", PROXIES)
    client_address("203.0.113.9", "192.0.2.1", PROXIES)           # the unlisted proxy
    lines = [r.getMessage() for r in caplog.records if r.name == "web.address"]
    assert len(lines) == 3, lines
    assert "198.51.100.1 " in lines[0] and "2001:db8:1:2::1 " in lines[1]
    assert "203.0.113.9" in lines[2]


def test_a_forged_chain_longer_than_the_cap_costs_bounded_work():
    chain = ", ".join(["10.0.0.1"] * 100_000)
    assert client_address("10.0.0.2", chain, PROXIES) == "10.0.0.1"


def test_hops_beyond_the_cap_are_not_read():
    """Only the last MAX_FORWARDED_HOPS entries are walked: an address a client wrote before
    that many of our proxies' hops is not believed."""
    from web.address import MAX_FORWARDED_HOPS
    chain = ", ".join(["198.51.100.9"] + ["10.0.0.1"] * MAX_FORWARDED_HOPS)
    assert client_address("10.0.0.2", chain, PROXIES) == "10.0.0.1"
    shorter = ", ".join(["198.51.100.9"] + ["10.0.0.1"] * (MAX_FORWARDED_HOPS - 1))
    assert client_address("10.0.0.2", shorter, PROXIES) == "198.51.100.9"


def test_warnings_about_headers_not_believed_stop_at_their_cap(caplog, no_warnings_yet):
    """One line per unlisted proxy, up to MAX_WARNED_PEERS of them: no more, however many."""
    from web.address import MAX_WARNED_PEERS
    caplog.set_level("WARNING", logger="web.address")
    for i in range(MAX_WARNED_PEERS + 4):
        client_address(f"203.0.113.{i + 1}", "192.0.2.1", PROXIES)
    lines = [r for r in caplog.records if r.name == "web.address"]
    assert len(lines) == MAX_WARNED_PEERS


def test_limit_key_groups_ipv6_by_64():
    assert limit_key("2001:db8:1:2:aaaa::1") == limit_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert limit_key("203.0.113.7") == "203.0.113.7"
    assert limit_key("") == ""


def test_cors_headers():
    assert cors_headers("https://a.example", ("*",))["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in cors_headers("https://a.example", ("*",))
    listed = cors_headers("https://a.example", ("https://A.example/", "https://b.example"))
    assert listed["Access-Control-Allow-Origin"] == "https://a.example"
    assert listed["Access-Control-Allow-Credentials"] == "true"
    assert cors_headers("https://evil.example", ("https://a.example",)) == {}
    assert cors_headers(None, ("https://a.example",)) == {}
    assert cors_headers("null", ("https://a.example",)) == {}


def test_a_page_of_a_listed_origin_may_read_retry_after():
    """A refused page (429, 503) is told when to come back: the browser shows it Retry-After
    only if the gateway exposes it."""
    for allowed in (("*",), ("https://a.example",)):
        headers = cors_headers("https://a.example", allowed)
        assert headers["Access-Control-Expose-Headers"] == "Retry-After"


def test_cors_headers_never_echo_an_origin_that_only_begins_with_a_listed_one():
    """CORS_ALLOWED_ORIGINS=https://a.example: a page of https://a.example.evil.test (a domain
    anyone may register) must not be let read the gateway's answers with the user's cookie."""
    for sent in ("https://a.example.evil.test", "https://a.examplex", "https://a.example:8443"):
        assert cors_headers(sent, ("https://a.example",)) == {}, sent
    assert cors_headers("https://a.example", ("https://a.example",))[
        "Access-Control-Allow-Origin"] == "https://a.example"


# -- the app, with a limiter driven directly ------------------------------------------------
class Clock:
    now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def gateway():
    def build(**overrides):
        settings = Settings.defaults(**overrides)
        clock = Clock()
        limiter = RateLimiterActor(settings=settings, clock=clock)
        system = SimpleNamespace(
            limiter=DirectRef(limiter), stopping=threading.Event(),
            broker=FakeRef({GetStats: Stats()}), history=FakeRef({GetHistorySize: 0}))
        door = Gateway(settings, broker=system.broker, history=system.history,
                       limiter=system.limiter, stopping=system.stopping)
        app = create_app(settings, gateway=door)
        return SimpleNamespace(client=app.test_client(), limiter=limiter, clock=clock,
                               system=system)
    yield build
    stop_all()


def _streams(gw):
    return gw.limiter.on_receive(GetLimiterStats()).streams


def test_stats_is_limited_health_is_not(gateway):
    gw = gateway(rate_limit_burst_size=3)
    assert [gw.client.get("/stats").status_code for _ in range(4)] == [200, 200, 200, 429]
    refused = gw.client.get("/stats")
    assert refused.json["error"] == "rate_limited" and refused.headers["Retry-After"] == "1"
    assert all(gw.client.get("/health").status_code != 429 for _ in range(20))
    gw.clock.now += 1
    assert gw.client.get("/stats").status_code == 200


def test_the_limit_follows_the_trusted_forwarded_address(gateway):
    gw = gateway(rate_limit_burst_size=1, trusted_proxies=_nets("127.0.0.0/8"))
    assert gw.client.get("/stats", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200
    assert gw.client.get("/stats", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 429
    assert gw.client.get("/stats", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 200


def test_a_stream_holds_a_slot_until_its_body_is_closed_unstarted(gateway):
    gw = gateway(sse_max_clients_per_ip=1)
    response = gw.client.get("/events")
    assert response.status_code == 200 and _streams(gw) == 1
    second = gw.client.get("/events")
    assert second.status_code == 429 and second.json["error"] == "too_many_streams_per_ip"
    [client] = every_actor()
    response.close()                                    # never iterated: still released
    assert _streams(gw) == 0
    assert client.actor_stopped.wait(2)


def test_a_stream_that_ends_releases_its_slot_once(gateway):
    gw = gateway()
    response = gw.client.get("/events")
    [subscribe] = gw.system.broker.of(Subscribe)
    subscribe.outbox.close("test over", b": bye\n\n")
    body = b"".join(response.response)
    assert body.endswith(b": bye\n\n")
    response.close()
    assert _streams(gw) == 0 and gw.limiter.per_ip == {}


def test_refused_and_invalid_requests_take_no_slot_and_start_no_actor(gateway):
    gw = gateway(sse_max_clients=1)
    assert gw.client.get("/events?event_types=%3Cscript%3E").status_code == 400
    assert gw.client.head("/events").status_code == 200
    assert _streams(gw) == 0 and every_actor() == []
    first = gw.client.get("/events")
    full = gw.client.get("/events", environ_base={"REMOTE_ADDR": "198.51.100.9"})
    assert full.status_code == 503 and full.json["error"] == "too_many_streams"
    assert full.headers["Retry-After"] == "5"
    assert len(every_actor()) == 1
    first.close()


def test_a_client_actor_that_fails_to_start_gives_the_slot_back(gateway, monkeypatch):
    from actors import gateway as core_gateway

    def broken(**kwargs):
        raise RuntimeError("no actor for you")
    monkeypatch.setattr(core_gateway.ClientActor, "start", broken)
    gw = gateway()
    response = gw.client.get("/events")
    assert response.status_code == 500 and response.json["error"] == "internal_error"
    assert _streams(gw) == 0


def test_repeated_filter_parameters_add_up(gateway):
    gw = gateway()
    response = gw.client.get("/events?event_types=a&event_types=b")
    [subscribe] = gw.system.broker.of(Subscribe)
    assert subscribe.info.filter.event_types == ("a", "b")
    response.close()
    too_many = "&".join(f"event_types=t{i}" for i in range(101))
    assert gw.client.get(f"/events?{too_many}").status_code == 400


def test_preflight_for_an_allowed_origin(gateway):
    gw = gateway(cors_allowed_origins=("https://app.example",))
    response = gw.client.options("/events", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "last-event-id, cache-control"})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    # Cache-Control: sent by some EventSource polyfills (LaunchDarkly's js-eventsource), whose
    # preflight failed on a page of another origin
    assert response.headers["Access-Control-Allow-Headers"] == (
        "Content-Type, Last-Event-ID, Cache-Control")
    # as the README says: GET and HEAD (POST only for /tickets, with auth on), for 600 s
    assert response.headers["Access-Control-Allow-Methods"] == "GET, HEAD"
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert "Origin" in response.headers["Vary"]
    assert _streams(gw) == 0


def test_preflight_and_requests_from_a_disallowed_origin(gateway):
    gw = gateway(cors_allowed_origins=("https://app.example",))
    evil = {"Origin": "https://evil.example"}
    response = gw.client.options("/events", headers={**evil, "Access-Control-Request-Method": "GET"})
    assert response.status_code == 403 and response.json["error"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in response.headers
    stats = gw.client.get("/stats", headers=evil)
    assert stats.status_code == 200 and "Access-Control-Allow-Origin" not in stats.headers
    assert "Origin" in stats.headers["Vary"]


def test_wildcard_origin_never_allows_credentials(gateway):
    gw = gateway()
    response = gw.client.get("/stats", headers={"Origin": "https://any.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers
    refused = gw.client.options("/events", headers={"Origin": "https://any.example",
                                                     "Access-Control-Request-Method": "GET"})
    assert refused.status_code == 204
    assert "Access-Control-Allow-Credentials" not in refused.headers


def test_other_methods_on_events_get_405_json(gateway):
    gw = gateway()
    for method in ("post", "put", "delete", "patch"):
        response = getattr(gw.client, method)("/events")
        assert response.status_code == 405 and response.json["error"] == "method_not_allowed"
        assert "GET" in response.headers["Allow"]
        # werkzeug's "The method is not allowed for the requested URL." named none (README walk)
        assert response.json["message"] == "this path takes GET, HEAD and OPTIONS only"
    assert gw.client.delete("/health").json["message"] == "this path takes GET, HEAD and " \
                                                          "OPTIONS only"
    assert _streams(gw) == 0


def test_head_is_refused_as_its_stream_would_be_and_takes_no_slot(gateway):
    """HEAD answers like the stream would (the OpenAPI contract; the live page reads its
    Retry-After before reconnecting): at a stream cap, 429 or 503, and never a slot."""
    gw = gateway(sse_max_clients=2, sse_max_clients_per_ip=1)
    first = gw.client.get("/events")
    same = gw.client.head("/events")
    assert same.status_code == 429
    assert same.headers["Retry-After"] == "5"
    other = {"REMOTE_ADDR": "198.51.100.9"}
    assert gw.client.head("/events", environ_base=other).status_code == 200
    second = gw.client.get("/events", environ_base=other)
    full = gw.client.head("/events", environ_base={"REMOTE_ADDR": "198.51.100.10"})
    assert full.status_code == 503 and full.headers["Retry-After"] == "5"
    assert _streams(gw) == 2
    first.close()
    second.close()
    assert gw.client.head("/events").status_code == 200 and _streams(gw) == 0


def test_a_trusted_proxy_naming_clients_in_headers_we_do_not_read_is_said_once(
        caplog, no_warnings_yet):
    """A proxy in TRUSTED_PROXIES that sends Forwarded (HAProxy's option forwarded) or
    X-Real-IP but no X-Forwarded-For: every client behind it counted as the proxy, silently."""
    from web.address import request_address
    caplog.set_level("WARNING", logger="web.address")
    app = create_app(Settings.defaults())
    asked = [("10.0.0.2", {"Forwarded": "for=198.51.100.7"}),
             ("10.0.0.2", {"X-Real-IP": "198.51.100.8"}),            # the same proxy: once
             ("10.0.0.3", {"X-Real-IP": "198.51.100.9"}),
             ("203.0.113.5", {"Forwarded": "for=198.51.100.7"}),     # not a proxy of ours
             ("10.0.0.4", {"Forwarded": "for=x", "X-Forwarded-For": "198.51.100.7"})]
    found = []
    for peer, headers in asked:
        with app.test_request_context(headers=headers, environ_base={"REMOTE_ADDR": peer}):
            found.append(request_address(PROXIES))
    assert found == ["10.0.0.2", "10.0.0.2", "10.0.0.3", "203.0.113.5", "198.51.100.7"]
    lines = [r.getMessage() for r in caplog.records if r.name == "web.address"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("10.0.0.2, a proxy TRUSTED_PROXIES lists")
    assert "X-Forwarded-For" in lines[0] and lines[1].startswith("10.0.0.3,")



def test_a_stream_through_a_trusted_proxy_naming_clients_in_forwarded_alone_is_said(
        gateway, caplog, no_warnings_yet):
    """GET /events is served ahead of Flask (web/events_path.py): its requests, the ones that
    matter here, never said it; only a /health or /stats through the proxy did."""
    caplog.set_level("WARNING", logger="web.address")
    gw = gateway(trusted_proxies=PROXIES, sse_max_clients_per_ip=1)
    through = {"REMOTE_ADDR": "10.0.0.2"}
    first = gw.client.get("/events", headers={"Forwarded": "for=198.51.100.7"},
                          environ_base=through)
    second = gw.client.get("/events", headers={"X-Real-IP": "198.51.100.8"},
                           environ_base=through)
    assert (first.status_code, second.status_code) == (200, 429)     # both count as the proxy
    lines = [r.getMessage() for r in caplog.records if r.name == "web.address"]
    assert len(lines) == 1 and lines[0].startswith("10.0.0.2, a proxy TRUSTED_PROXIES lists")
    first.close()

def test_stats_and_tickets_count_an_ipv6_client_by_its_64(gateway):
    """A client that owns a /64 has as many addresses as it likes: the rate limit of /stats
    (and POST /tickets) counts the /64, as the README says."""
    gw = gateway(rate_limit_burst_size=1)
    first = gw.client.get("/stats", environ_base={"REMOTE_ADDR": "2001:db8:1:2::1"})
    second = gw.client.get("/stats", environ_base={"REMOTE_ADDR": "2001:db8:1:2::2"})
    other = gw.client.get("/stats", environ_base={"REMOTE_ADDR": "2001:db8:1:3::1"})
    assert (first.status_code, second.status_code, other.status_code) == (200, 429, 200)
