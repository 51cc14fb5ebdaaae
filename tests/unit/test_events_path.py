"""web/events_path.py: GET /events served ahead of Flask answers exactly as the Flask view
does (status, headers, JSON body) for every outcome, and under gunicorn sends the response head
and the first chunk in one write."""
import ipaddress
import json
import threading
import time
from types import SimpleNamespace

import jwt
import pytest
from gunicorn.config import Config
from gunicorn.http.wsgi import Response as GunicornResponse
from werkzeug.test import Client, EnvironBuilder

from actors.auth.authenticator import Authenticator
from actors.gateway import Gateway
from actors.limiter import RateLimiterActor
from actors.messages import GetHistorySize, GetStats
from actors.replies import Stats
from actors.settings import Settings
from tests.fakes import DirectRef, FakeRef, stop_all
from web import create_app
from web.events_path import EventsPath, Query, head_and_first_chunk

SECRET = b"j" * 32
TICKET_SECRET = b"t" * 32
SCOPE = {"event_types": ["order.*"], "sources": ["*"]}
ORIGIN = "https://app.example"


def token(sub="alice", exp_in=86400, secret=SECRET, scope=None):
    return jwt.encode({"sub": sub, "sse": scope or SCOPE, "exp": int(time.time()) + exp_in},
                      secret, algorithm="HS256")


@pytest.fixture
def build():
    def make(attach=True, **overrides):
        settings = Settings.defaults(**overrides)
        limiter = RateLimiterActor(settings=settings, clock=time.monotonic)
        auth = Authenticator.from_settings(settings) if settings.auth_mode != "off" else None
        broker = FakeRef({GetStats: Stats()})
        door = Gateway(settings, broker=broker,
                       history=FakeRef({GetHistorySize: 0}), limiter=DirectRef(limiter),
                       stopping=threading.Event(), auth=auth)
        app = create_app(settings, gateway=door if attach else None)
        assert isinstance(app.wsgi_app, EventsPath)
        return SimpleNamespace(app=app, auth=auth, broker=broker,  # cookies: as headers say
                               fast=Client(app.wsgi_app, use_cookies=False),
                               flask=Client(app.wsgi_app.fallback, use_cookies=False))
    yield make
    stop_all()


AUTH = dict(auth_mode="required", auth_jwt_algorithms=("HS256",), auth_jwt_secret=SECRET,
            auth_ticket_secret=TICKET_SECRET)


def answer(client, url, headers=None):
    response = client.get(url, headers=headers or {}, buffered=False)
    try:
        if response.status_code == 200:
            body = None              # a stream: its greeting names a new client id
        else:
            body = json.loads(response.get_data())
        return response.status, sorted(response.headers.items()), body
    finally:
        response.close()


def same_answer(gw, url, headers=None):
    fast = answer(gw.fast, url, headers)
    assert fast == answer(gw.flask, url, headers)
    return fast


@pytest.mark.parametrize("url, status", [
    ("/events?history=false", "200 OK"),
    ("/events?event_types=order.*&sources=shop&unnamed=true", "200 OK"),
    ("/events?event_types=a&event_types=b", "200 OK"),
    ("/events?history=maybe", "400 BAD REQUEST"),
    ("/events?event_types=" + "x" * 300, "400 BAD REQUEST"),
    ("/events?since=yesterday", "400 BAD REQUEST"),
    ("/events?access_token=abc", "400 BAD REQUEST"),
    ("/events?%20Token=abc", "400 BAD REQUEST"),
])
def test_without_auth_the_answer_is_the_flask_views(build, url, status):
    gw = build(cors_allowed_origins=(ORIGIN,))
    got = same_answer(gw, url, {"Origin": ORIGIN, "Last-Event-ID": "not-ours"})
    assert got[0] == status


@pytest.mark.parametrize("origins, origin", [(("*",), "https://x.example"),
                                             ((ORIGIN,), ORIGIN), ((ORIGIN,), "https://evil"),
                                             ((ORIGIN,), None)])
def test_cors_headers_and_vary_are_the_flask_views(build, origins, origin):
    gw = build(cors_allowed_origins=origins)
    status, headers, _ = same_answer(gw, "/events", {"Origin": origin} if origin else {})
    assert status == "200 OK"
    assert ("Content-Type", "text/event-stream; charset=utf-8") in headers


@pytest.mark.parametrize("headers, query, status", [
    ({}, "", "401 UNAUTHORIZED"),
    ({"Authorization": "Basic abc"}, "", "401 UNAUTHORIZED"),
    ({"Authorization": f"Bearer {token(secret=b'x' * 32)}"}, "", "401 UNAUTHORIZED"),
    ({"Authorization": f"Bearer {token(exp_in=-3600)}"}, "", "401 UNAUTHORIZED"),
    ({}, "ticket=garbage", "401 UNAUTHORIZED"),
    ({"Cookie": f"sse_token={token(secret=b'x' * 32)}"}, "", "401 UNAUTHORIZED"),
    ({"Authorization": f"Bearer {token()}"}, "event_types=user.*", "403 FORBIDDEN"),
    ({"Authorization": f"Bearer {token()}"}, "token=abc", "400 BAD REQUEST"),
    ({"Authorization": f"Bearer {token()}"}, "event_types=order.*", "200 OK"),
    ({"Cookie": f"sse_token={token()}"}, "", "200 OK"),
])
def test_with_auth_the_answer_is_the_flask_views(build, headers, query, status):
    gw = build(**AUTH, auth_cookie_name="sse_token", cors_allowed_origins=(ORIGIN,))
    got = same_answer(gw, f"/events?{query}", {**headers, "Origin": ORIGIN})
    assert got[0] == status


def test_a_ticket_opens_one_stream_either_way_and_is_refused_the_second_time(build):
    gw = build(**AUTH)
    identity = gw.auth.identify(bearer=token())
    for client in (gw.fast, gw.flask):
        ticket, _ = gw.auth.issue_ticket(identity)
        assert answer(client, f"/events?ticket={ticket}")[0] == "200 OK"
        again = answer(client, f"/events?ticket={ticket}")
        assert again[0] == "401 UNAUTHORIZED" and "ticket already used" in again[2]["message"]


def test_refusals_by_the_limiter_carry_retry_after_either_way(build):
    gw = build(sse_max_clients_per_ip=1, rate_limit_enabled=False)
    held = gw.fast.get("/events", buffered=False)
    assert held.status_code == 200
    status, headers, body = same_answer(gw, "/events")
    assert status == "429 TOO MANY REQUESTS" and body["error"] == "too_many_streams_per_ip"
    assert dict(headers)["Retry-After"]
    held.close()


@pytest.mark.parametrize("proxies, peer, forwarded, statuses", [
    (("127.0.0.0/8",), "127.0.0.1", ["198.51.100.1", "198.51.100.2", "198.51.100.1"],
     [200, 200, 429]),                  # clients behind our proxy: each its own address
    (("10.0.0.0/8",), "203.0.113.5", ["198.51.100.1", "198.51.100.2"],
     [200, 429]),                       # a stranger's X-Forwarded-For is not believed
])
def test_streams_are_counted_by_the_address_the_fast_path_believes(build, proxies, peer,
                                                                   forwarded, statuses):
    """GET /events is served ahead of Flask: it too reads the client's address through
    TRUSTED_PROXIES for SSE_MAX_CLIENTS_PER_IP."""
    gw = build(sse_max_clients_per_ip=1, rate_limit_enabled=False,
               trusted_proxies=tuple(ipaddress.ip_network(p) for p in proxies))
    opened = [gw.fast.get("/events", headers={"X-Forwarded-For": address}, buffered=False,
                          environ_base={"REMOTE_ADDR": peer}) for address in forwarded]
    try:
        assert [response.status_code for response in opened] == statuses
    finally:
        for response in opened:
            response.close()


def test_without_a_gateway_the_answer_is_503_retry_after_either_way(build):
    gw = build(attach=False)
    status, headers, body = same_answer(gw, "/events")
    assert status == "503 SERVICE UNAVAILABLE" and dict(headers)["Retry-After"] == "5"
    assert body["error"] == "unavailable"


def test_an_unexpected_error_is_a_500_json_and_logged_either_way(build, monkeypatch, caplog):
    gw = build()
    gateway = gw.app.extensions["sse.gateway"]
    monkeypatch.setattr(gateway, "open_stream", lambda **_: 1 / 0)
    status, _, body = same_answer(gw, "/events")
    assert status == "500 INTERNAL SERVER ERROR" and body["error"] == "internal_error"
    assert "ZeroDivisionError" not in json.dumps(body)
    assert caplog.text.count("unhandled error") == 2


def test_a_refusal_whose_handler_fails_is_still_the_apps_json_500(build, monkeypatch):
    """The fast path answers a refusal with the app's handlers; when one of those fails too,
    the client still gets the app's JSON 500, not the server's plain page (or nothing)."""
    gw = build(sse_max_clients_per_ip=1, rate_limit_enabled=False)
    held = gw.fast.get("/events", buffered=False)
    monkeypatch.setattr(gw.app, "handle_user_exception", lambda exc: 1 / 0)
    refused = gw.fast.get("/events", buffered=False)
    assert refused.status_code == 500 and refused.json["error"] == "internal_error"
    held.close()


def test_get_events_does_not_go_through_the_flask_view(build):
    gw = build()
    gw.app.view_functions["stream.events"] = lambda: 1 / 0
    response = gw.app.test_client().get("/events", buffered=False)
    assert response.status_code == 200
    response.close()
    assert gw.app.test_client().head("/events").status_code == 500   # HEAD: the Flask view


def test_other_paths_and_methods_go_to_flask(build):
    gw = build()
    client = gw.app.test_client()
    assert client.post("/events").status_code == 405
    assert client.get("/events/").status_code == 404
    head = client.head("/events")
    assert head.status_code == 200 and head.data == b""
    assert "Content-Length" not in head.headers      # the GET's stream has no length
    assert client.get("/openapi.json").status_code == 200


def test_the_admin_listener_keeps_its_404_for_events(build):
    gw = build(admin_port=9191)
    response = gw.app.test_client().get("/events", environ_overrides={"SERVER_PORT": "9191"})
    assert response.status_code == 404 and response.json["error"] == "not_found"


@pytest.mark.parametrize("query", [
    "", "a=1&a=2&b=", "history", "x=%20y+z&y=%FF%FE", "a=1;b=2", "ticket=abc-_.DEF&&&",
    "event_types=order.*&sources=s%2Ct", "%41=%42", "=v&k",
])
def test_the_query_reads_as_werkzeug_reads_it(query):
    args = EnvironBuilder(query_string=query).get_request().args
    mine = Query(EnvironBuilder(query_string=query).get_environ()["QUERY_STRING"])
    assert list(mine) == list(args.keys())
    for name in args.keys():
        assert mine.get(name) == args.get(name) and mine.getlist(name) == args.getlist(name)
        assert name in mine
    assert "missing" not in mine and mine.get("missing") is None


class RecordingSocket:
    def __init__(self):
        self.sends = []

    def sendall(self, data):
        self.sends.append(bytes(data))


def undated(data: bytes) -> bytes:
    return b"\r\n".join(line for line in data.split(b"\r\n") if not line.startswith(b"Date:"))


def gunicorn_response(version=(1, 1)):
    req = SimpleNamespace(version=version, method="GET", should_close=lambda: True)
    return GunicornResponse(req, RecordingSocket(), Config())


def test_under_gunicorn_the_head_and_the_first_chunk_go_in_one_send_with_the_same_bytes():
    joined, split = gunicorn_response(), gunicorn_response()
    for response in (joined, split):
        response.start_response("200 OK", [("Content-Type", "text/event-stream"),
                                           ("Cache-Control", "no-cache")])
    head_and_first_chunk(joined.start_response)(b"retry: 1000\n\n")
    joined.write(b"data: 1\n\n")
    split.write(b"retry: 1000\n\n")
    split.write(b"data: 1\n\n")
    joined_sends, split_sends = joined.sock.sends, split.sock.sends
    assert len(joined_sends) == 2 and len(split_sends) == 3
    assert undated(b"".join(joined_sends)) == undated(b"".join(split_sends))
    assert joined_sends[0].endswith(b"\r\n\r\nD\r\nretry: 1000\n\n\r\n")
    assert joined.headers_sent


def test_no_joined_write_for_http_1_0_or_another_server():
    old = gunicorn_response(version=(1, 0))
    old.start_response("200 OK", [("Content-Type", "text/event-stream")])
    assert head_and_first_chunk(old.start_response) is None           # not chunked
    assert head_and_first_chunk(lambda status, headers: None) is None


def test_an_id_of_an_instance_with_other_kafka_topics_is_a_warning_once(build, caplog):
    """A client coming from an instance whose KAFKA_TOPICS differ loses its place without a
    gap event: the operator is warned (once per such list), not only told at INFO per client."""
    from actors.resume import Frontier
    gw = build()
    topics = gw.app.config["SETTINGS"].kafka_topics
    theirs = Frontier((*topics, "orders.new"), {(topics[0], 0): 7}).token()
    caplog.set_level("INFO", logger="web.stream")
    for _ in range(3):
        assert gw.flask.head("/events", headers={"Last-Event-ID": theirs}).status_code == 200
    assert gw.flask.head("/events", headers={"Last-Event-ID": "someone-else:42"}).status_code == 200
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "KAFKA_TOPICS differ" in warnings[0]
    assert "did not issue" not in caplog.text       # HEAD: no stream, no line per request


def test_ids_of_ever_more_other_topic_lists_are_warned_about_16_times_at_most(
        build, caplog, monkeypatch):
    """Anyone can send an id naming topics of their own choosing: a WARNING for each list
    that had not been seen, unbounded, let one client fill the log (and the worker's memory
    with the lists remembered)."""
    from actors.resume import Frontier
    from web import stream
    monkeypatch.setattr(stream, "_WARNED", set())
    gw = build(rate_limit_enabled=False)
    topics = gw.app.config["SETTINGS"].kafka_topics
    caplog.set_level("WARNING", logger="web.stream")
    for n in range(20):
        forged = Frontier((*topics, f"forged.{n}"), {(topics[0], 0): 7}).token()
        assert gw.flask.head("/events", headers={"Last-Event-ID": forged}).status_code == 200
    assert len([r for r in caplog.records if "KAFKA_TOPICS differ" in r.getMessage()]) == 16
    assert len(stream._WARNED) == 16


def test_the_query_reads_as_werkzeug_reads_it_for_random_queries():
    """The plain-ASCII fast path (no %, no +) and the full parse agree with werkzeug on
    queries made of the characters that matter (gunicorn passes no raw byte above 0x7f: it
    refuses such a request line)."""
    import random
    pick = random.Random(7)
    alphabet = ["a", "b", "=", "&", "&", ";", "%", "+", "2", "F", "-", "_", ".", "~", "*", ",",
                "\x7f", " ", "\u00c3\u00a9"]     # the last: é in UTF-8, as WSGI's latin-1 str
    for _ in range(3000):
        query = "".join(pick.choice(alphabet) for _ in range(pick.randint(0, 14)))
        from werkzeug.wrappers import Request
        args = Request({"QUERY_STRING": query}).args          # raw, as gunicorn passes it
        mine = Query(query)
        assert list(mine) == list(args.keys()), query
        for name in args.keys():
            assert mine.getlist(name) == args.getlist(name), query


@pytest.mark.parametrize("query, start", [
    ("history=false", "live only (history=false)"),
    ("", "from the history"),
    ("since=2026-12-01T00:00:00Z", "since 2026-12-01T00:00:00.000Z"),
])
def test_the_line_of_a_stream_with_a_foreign_id_says_where_it_starts(build, caplog, query,
                                                                    start):
    """An id this gateway did not issue is ignored; the stream's line said 'from the history'
    for a history=false stream too, which gets live events only."""
    gw = build()
    caplog.set_level("INFO", logger="web.stream")
    response = gw.fast.get(f"/events?{query}", headers={"Last-Event-ID": "someone-else:42"},
                           buffered=False)
    response.close()
    (line,) = [r.getMessage() for r in caplog.records if "did not issue" in r.getMessage()]
    assert line.endswith(f"did not issue ('someone-else:42'), ignored: {start}"), line


@pytest.mark.parametrize("query", ["history=false", "", "since=2026-12-01T00:00:00Z"])
def test_a_stream_with_an_id_of_other_kafka_topics_is_opened_to_be_told_so(build, query):
    """A client coming from an instance whose KAFKA_TOPICS differ (a topic appended to the
    list at a restart) started over without a word: 200 of 300 events it missed lost, all 300
    with history=false, and no gap event (a Kafka-scale audit). Its subscription says so, and
    the broker opens its stream with a gap (tests/unit/test_broker.py)."""
    from actors.messages import Subscribe
    from actors.resume import Frontier
    gw = build()
    topics = gw.app.config["SETTINGS"].kafka_topics
    theirs = Frontier((*topics, "orders.new"), {(topics[0], 0): 7}).token()
    ours = Frontier(topics, {(topics[0], 0): 7}).token()
    told = []
    for last_id in (theirs, ours, "someone-else:42"):
        response = gw.fast.get(f"/events?{query}", headers={"Last-Event-ID": last_id},
                               buffered=False)
        response.close()
        told.append(gw.broker.of(Subscribe)[-1].topics_changed)
    assert told == [True, False, False]
