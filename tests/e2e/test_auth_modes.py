"""AUTH_MODE=optional with a token cookie, end to end (issue 14): real Kafka, real gunicorn.

One gateway: HS256, owners in the record key, the token read from the `sse_token` cookie,
CORS limited to one origin, and an anonymous scope of `news.*`. A stream without a credential
gets the public news events only; a cookie stream gets its own events plus the public ones of
its scope and never another subject's; the allowed origin is echoed with credentials (never
`*`), another origin is not; a bad cookie is 401, not anonymous.
"""
from __future__ import annotations

import json
import secrets
import uuid

import pytest

from tests.authtools import (close_all, drain, hs256_token, log_leaks, remember, request,
                             wait_for)
from tests.harness import Service, free_port
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e

ORIGIN = "https://app.example.test"
COOKIE = "sse_token"
EVENTS = [  # (owner or None, event type)
    (None, "news.posted"), ("alice", "orders.created"), ("bob", "orders.created"),
    (None, "orders.created"), ("alice", "news.posted"), (None, "chat.message"),
    ("bob", "news.posted"), (None, "news.posted"),
]


@pytest.fixture(scope="module")
def gateway(kafka, tmp_path_factory):
    from kafka.admin import KafkaAdminClient, NewTopic
    topic = f"auth-modes.{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=[kafka.bootstrap])
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        admin.close()
    secret = remember(secrets.token_urlsafe(48))
    svc = Service(kafka.bootstrap, [topic], tmp_path_factory.mktemp("modes") / "gunicorn.log",
                  WORKERS=1, GRPC_PORT=free_port(), AUTH_MODE="optional",
                  AUTH_JWT_ALGORITHMS="HS256", AUTH_JWT_SECRET=secret,
                  AUTH_COOKIE_NAME=COOKIE, CORS_ALLOWED_ORIGINS=ORIGIN,
                  AUTH_ANONYMOUS_SCOPE="event_types=news.*;sources=*",
                  AUTH_SUBJECT_FIELD="key", ACCESS_LOG="true")
    svc.topic, svc.secret = topic, secret.encode()
    svc.start(expect_partitions=1)
    yield svc
    svc.stop()


def _token(gateway, sub, event_types=("orders.*", "news.*")):
    return remember(hs256_token(gateway.secret, sub, event_types=event_types))


def _open(gateway, headers=None):
    client = SSEClient(f"{gateway.url}/events", headers=headers, timeout=15)
    if client.status == 200:
        client.read_until(lambda evs: client.parser.comments or evs, timeout=15)
    return client


def _produce(kafka, topic, run):
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap])
    try:
        for seq, (owner, kind) in enumerate(EVENTS):
            event = {"type": kind, "source": "e2e", "data": {"run": run, "seq": seq}}
            producer.send(topic, json.dumps(event).encode(),
                          key=owner.encode() if owner else None)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)


def _seqs(client, run):
    return sorted(json.loads(e["data"])["data"]["seq"] for e in client.events
                  if e["event"] not in ("gap", "auth-expired")
                  and json.loads(e["data"])["data"]["run"] == run)


def _expected(subject, types):
    return sorted(seq for seq, (owner, kind) in enumerate(EVENTS)
                  if owner in (None, subject) and kind.split(".")[0] in types)


def test_anonymous_and_cookie_streams_each_get_exactly_their_events(gateway, kafka):
    def cookie(sub):
        return {"Cookie": f"{COOKIE}={_token(gateway, sub)}", "Origin": ORIGIN}

    clients = {"anonymous": _open(gateway), "alice": _open(gateway, cookie("alice")),
               "bob": _open(gateway, cookie("bob"))}
    try:
        assert {name: c.status for name, c in clients.items()} == dict.fromkeys(clients, 200)
        assert clients["alice"].headers.get("Access-Control-Allow-Origin") == ORIGIN
        assert clients["alice"].headers.get("Access-Control-Allow-Credentials") == "true"
        run = uuid.uuid4().hex
        _produce(kafka, gateway.topic, run)
        want = {"anonymous": _expected(None, ("news",)),
                "alice": _expected("alice", ("orders", "news")),
                "bob": _expected("bob", ("orders", "news"))}
        drain(list(clients.values()),
              lambda: all(_seqs(clients[n], run) == want[n] for n in clients), timeout=20)
        assert {n: _seqs(c, run) for n, c in clients.items()} == want
    finally:
        close_all(clients.values())


def test_cors_echoes_only_the_listed_origin_never_a_wildcard(gateway):
    headers = {"Cookie": f"{COOKIE}={_token(gateway, 'alice')}", "Origin": "https://evil.test"}
    client = _open(gateway, headers)
    try:
        assert client.status == 403             # the cookie of an unlisted origin opens nothing
        assert client.headers.get("Access-Control-Allow-Origin") in (None, "")
        assert client.headers.get("Access-Control-Allow-Credentials") in (None, "")
    finally:
        client.close()
    status, head, _ = request(f"{gateway.url}/events", "OPTIONS",
                              {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"})
    assert head.get("Access-Control-Allow-Origin") == ORIGIN
    assert head.get("Access-Control-Allow-Credentials") == "true"


def test_a_bad_cookie_is_refused_not_taken_for_anonymous(gateway):
    forged = remember(hs256_token(b"x" * 48, "alice", event_types=("orders.*",)))
    status, head, body = request(f"{gateway.url}/events?history=false", "GET",
                                 {"Cookie": f"{COOKIE}={forged}"}, timeout=5)
    assert status == 401, (status, body)
    assert "Bearer" in head.get("Www-Authenticate", "")
    assert forged not in body.decode()


def test_a_ticket_from_the_cookie_and_no_cookie_in_the_log(gateway):
    token = _token(gateway, "alice")
    status, _, body = request(f"{gateway.url}/tickets", "POST",
                              {"Cookie": f"{COOKIE}={token}", "Origin": ORIGIN})
    assert status == 201, body
    remember(json.loads(body)["ticket"])
    def log():
        return gateway.log_path.read_text(errors="replace")

    wait_for(lambda: "/tickets" in log(), what="the access log line of POST /tickets")
    assert "Cookie" not in log() and token not in log()
    assert log_leaks(log()) == []
