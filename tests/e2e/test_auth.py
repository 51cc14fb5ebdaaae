"""Subscriber auth end to end (issue 14): real Kafka, real gunicorn, a JWKS server on loopback.

One gateway (one worker, AUTH_MODE=required, RS256 keys from the JWKS, owners in the record
key) serves every test here but one (a second instance: HS256, owners at a path in the event
data, the same ticket secret). Each subject sees exactly its own events plus the public ones
of its scope: live, after every stream is dropped and resumed with its Last-Event-ID, and
with `since`. An expiring token ends its stream with `auth-expired`; DisconnectSubject ends
one subject's streams; credentials are refused with the right status and reason; and no
token or ticket ever reaches the log.
"""
from __future__ import annotations

import json
import random
import secrets
import threading
import time
import uuid
from fnmatch import fnmatchcase

import jwt
import pytest

from tests.authtools import (SECRETS_SEEN, JwksServer, SigningKey, bearer, close_all, drain,
                             events_url, hs256_token, log_leaks, older_ticket, open_stream,
                             post_ticket, remember, request, ticket, wait_for)
from tests.harness import Service, free_port, http_json
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e

AUDIENCE = "sse-e2e"
ISSUER = "https://issuer.e2e.test"
PER_SUBJECT = 55                     # SSE_MAX_CLIENTS_PER_SUBJECT
SCOPES = {                           # subject -> (event_types, sources)
    "alice": (("orders.*", "news.*"), ("*",)),
    "bob": (("orders.*", "chat.*"), ("shop", "chat-service")),
}
KINDS = (("orders.created", "shop"), ("orders.shipped", "warehouse"),
         ("news.posted", "newsroom"), ("chat.message", "chat-service"))
OWNERS = ("alice", "bob", None, "carol", "alice", "bob", None, None, "", "bob")   # "": nobody
REQUESTS = {                         # each subject's streams cycle through these filters
    "alice": ("", "event_types=orders.*", "event_types=news.*,orders.created",
              "sources=shop,newsroom", "event_types=*.created"),
    "bob": ("", "event_types=orders.*", "event_types=chat.*", "sources=chat-service",
            "event_types=*.message"),
}


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def jwks():
    with JwksServer("RS256") as server:
        yield server


def _create_topics(kafka, *names, partitions=3):
    from kafka.admin import KafkaAdminClient, NewTopic
    made = {name: f"{name}.{uuid.uuid4().hex[:8]}" for name in names}
    admin = KafkaAdminClient(bootstrap_servers=[kafka.bootstrap])
    try:
        admin.create_topics([NewTopic(t, partitions, 1) for t in made.values()])
    finally:
        admin.close()
    return made


@pytest.fixture(scope="module")
def send(kafka):
    """send(topic, event, key=, partition=, headers=): one record (key: str or bytes)."""
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], linger_ms=5)

    def one(topic, event, key=None, partition=None, headers=None):
        if isinstance(key, str):
            key = key.encode()
        return producer.send(topic, json.dumps(event).encode(), key=key, partition=partition,
                             headers=headers)

    one.flush = lambda: producer.flush(timeout=30)
    yield one
    producer.close(timeout=5)


@pytest.fixture(scope="module")
def gateway(kafka, jwks, tmp_path_factory):
    topics = _create_topics(kafka, "auth-mix", "auth-misc")
    ticket_secret = remember(secrets.token_urlsafe(48))
    svc = Service(kafka.bootstrap, list(topics.values()),
                  tmp_path_factory.mktemp("auth") / "gunicorn.log", WORKERS=1,
                  GRPC_PORT=free_port(), AUTH_MODE="required", AUTH_JWKS_URL=jwks.url,
                  AUTH_JWT_ALGORITHMS="RS256", AUTH_JWKS_REFRESH_SECONDS=1,
                  AUTH_JWT_AUDIENCE=AUDIENCE, AUTH_JWT_ISSUER=ISSUER, AUTH_JWT_LEEWAY_SECONDS=0,
                  AUTH_SUBJECT_FIELD="key", AUTH_TICKET_SECRET=ticket_secret,
                  SSE_MAX_CLIENTS_PER_SUBJECT=PER_SUBJECT, SSE_MAX_CLIENTS=1000,
                  SSE_MAX_CLIENTS_PER_IP=1000, HTTP_MAX_PENDING_PER_IP=500,
                  SSE_HISTORY_SIZE=2500, SSE_EVENT_BUFFER_SIZE=5000, ACCESS_LOG="true")
    svc.mix, svc.misc, svc.ticket_secret = topics["auth-mix"], topics["auth-misc"], ticket_secret
    svc.start(expect_partitions=6)
    yield svc
    svc.stop()


def token_of(jwks, sub, **kw):
    kw.setdefault("aud", AUDIENCE)
    kw.setdefault("iss", ISSUER)
    if sub in SCOPES and "event_types" not in kw:
        kw["event_types"], kw["sources"] = SCOPES[sub]
    return jwks.token(sub, **kw)


# -- what each stream should see -------------------------------------------------------------
def _matches(patterns, value):
    return not patterns or any(fnmatchcase(value, p) for p in patterns)


def _query_patterns(query):
    parts = dict(p.split("=", 1) for p in query.split("&") if p)
    return (tuple(filter(None, parts.get("event_types", "").split(","))),
            tuple(filter(None, parts.get("sources", "").split(","))))


def visible(event, owner, subject, query):
    types, sources = _query_patterns(query)
    scope_types, scope_sources = SCOPES[subject]
    return (_matches(types, event["type"]) and _matches(sources, event["source"])
            and _matches(scope_types, event["type"]) and _matches(scope_sources, event["source"])
            and (owner is None or owner == subject))


def mixed_events(numbers, rng):
    """(event, owner) pairs: every kind and owner (public, alice, bob, carol, nobody)."""
    out = []
    for n in numbers:
        event_type, source = KINDS[rng.randrange(len(KINDS))]
        owner = OWNERS[rng.randrange(len(OWNERS))]
        out.append(({"id": f"m{n}", "type": event_type, "source": source,
                     "data": {"n": n, "for": owner}}, owner))
    return out


def produce(send, topic, pairs, sent_log=None, per_second=None):
    started = time.monotonic()
    for i, (event, owner) in enumerate(pairs):
        send(topic, event, key=owner, partition=int(event["id"][1:]) % 3)
        if sent_log is not None:
            sent_log.append(event["id"])
        if per_second and i % 50 == 49:
            send.flush()
            ahead = (i + 1) / per_second - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    send.flush()


def in_background(target, *args, **kw):
    thread = threading.Thread(target=target, args=args, kwargs=kw, daemon=True)
    thread.start()
    return thread


def ids_in(events):
    return [json.loads(e["data"])["id"] for e in events
            if e["event"] not in ("gap", "auth-expired")]


def ids_of(client):
    return ids_in(client.events)


def wait_no_clients(svc, timeout=15.0):
    wait_for(lambda: http_json(svc.url + "/stats")[1].get("clients") == 0, timeout,
             what="every stream to be gone from /stats")


def exact(got, wanted, label):
    """got (a list, in arrival order) is wanted (a set) exactly: nothing missing, nothing
    twice, nothing foreign."""
    dupes = sorted({i for i in got if got.count(i) > 1}) if len(got) != len(set(got)) else []
    missing = sorted(wanted - set(got), key=lambda i: int(i[1:]))
    foreign = sorted(set(got) - wanted, key=lambda i: int(i[1:]))
    assert not (dupes or missing or foreign), (
        f"{label}: {len(missing)} missing {missing[:8]}, {len(foreign)} foreign {foreign[:8]}, "
        f"{len(dupes)} twice {dupes[:8]}")


def in_partition_order(got, label):
    numbers = [int(i[1:]) for i in got]
    for p in range(3):
        mine = [n for n in numbers if n % 3 == p]
        assert mine == sorted(mine), f"{label}: partition {p} out of order"


# -- the tests -------------------------------------------------------------------------------
def test_two_subjects_get_exactly_their_own_events_live_resumed_and_since(gateway, jwks, send):
    """50 streams each for alice and bob while 5,000 events of mixed owners are produced;
    every stream dropped mid-flow and resumed with its Last-Event-ID; then `since`."""
    rng = random.Random(14)
    first, second = mixed_events(range(3000), rng), mixed_events(range(3000, 5000), rng)
    owner_of = {e["id"]: o for e, o in first + second}
    event_of = {e["id"]: e for e, _ in first + second}
    tokens = {s: token_of(jwks, s) for s in SCOPES}
    streams = [(s, REQUESTS[s][i % 5], open_stream(gateway.url, tokens[s],
                                                   "history=false&" + REQUESTS[s][i % 5]))
               for s in SCOPES for i in range(50)]
    assert all(c.status == 200 for _, _, c in streams), [c.body[:200] for _, _, c in streams
                                                          if c.status != 200][:3]
    for subject, _, client in (streams[0], streams[-1]):      # the opening names who it is
        assert subject in " ".join(client.parser.comments), client.parser.comments

    def wanted(subject, query, ids):
        return {i for i in ids if visible(event_of[i], owner_of[i], subject, query)}

    # live, dropped mid-flow: close every stream once 2,000 events are out
    sent = []
    producer = in_background(produce, send, gateway.mix, first, sent, per_second=4000)
    clients = [c for _, _, c in streams]
    drain(clients, lambda: len(sent) >= 2000, timeout=60)
    close_all(clients)
    producer.join(60)
    assert len(sent) == 3000
    before = {}
    for n, (subject, query, client) in enumerate(streams):
        got = ids_of(client)
        exact(got, wanted(subject, query, got), f"{subject} live #{n}")   # none foreign/twice
        # half of them resume from an earlier event: further back, through Kafka
        if n % 2 and len(client.events) > 4:
            keep = len(client.events) * (n % 10) // 10
            last_id = client.events[keep - 1]["id"] if keep else client.parser.last_id
            events = client.events[:keep] if keep else client.events
        else:
            last_id, events = client.parser.last_id, client.events
        assert last_id, f"{subject} #{n} got no id at all"
        before[n] = (ids_in(events), last_id)
    total_live = sum(len(ids_of(c)) for c in clients)
    assert total_live > 2000, total_live          # the streams did carry the flow
    wait_no_clients(gateway)

    # resumed, while the last 2,000 are produced
    time.sleep(1.0)
    middle_ms = int(time.time() * 1000)
    time.sleep(0.2)
    resumed = []
    for n, (subject, query, _) in enumerate(streams):
        resumed.append(open_stream(gateway.url, tokens[subject], query, last_id=before[n][1],
                                   wait_open=False))
        if n % 10 == 9:
            drain(resumed, lambda: False, timeout=0.02)   # read the replays as they come
    assert all(c.status == 200 for c in resumed)
    produce(send, gateway.mix, second)
    all_ids = set(owner_of)
    targets = [wanted(s, q, all_ids) for s, q, _ in streams]
    drain(resumed, lambda: all(len(before[n][0]) + len(ids_of(c)) >= len(targets[n])
                               for n, c in enumerate(resumed)), timeout=90)
    drain(resumed, lambda: False, timeout=0.5)   # and nothing more arrives
    for n, ((subject, query, _), client) in enumerate(zip(streams, resumed, strict=True)):
        union = before[n][0] + ids_of(client)
        exact(union, targets[n], f"{subject} #{n} ({query or 'all'}) after resume")
        in_partition_order(union, f"{subject} #{n}")
    replays = http_json(gateway.url + "/stats")[1]["kafka_replays"]
    assert 1 <= replays < 100, replays      # far back: from Kafka; the others: the history
    close_all(resumed)
    wait_no_clients(gateway)

    # since: from before the first event, and from between the two batches
    later = {e["id"] for e, _ in second}
    checks = []
    for subject in SCOPES:
        for i, query in enumerate(REQUESTS[subject]):
            since = 0 if i % 2 == 0 else middle_ms
            checks.append((subject, query, since, open_stream(
                gateway.url, tokens[subject], f"{query}&since={since}".lstrip("&"))))
    want = [wanted(s, q, all_ids if since == 0 else later) for s, q, since, _ in checks]
    clients = [c for *_, c in checks]
    pairs = list(zip(clients, want, strict=True))
    drain(clients, lambda: all(len(ids_of(c)) >= len(w) for c, w in pairs), 90)
    drain(clients, lambda: False, timeout=0.5)
    for (subject, query, since, client), target in zip(checks, want, strict=True):
        exact(ids_of(client), target, f"{subject} since={since} ({query or 'all'})")
    close_all(clients)


def misc_event(n, tag, event_type="orders.created", source="shop"):
    return {"id": f"{tag}{n}", "type": event_type, "source": source, "data": {"n": n}}


def test_an_expiring_token_ends_the_stream_with_auth_expired_and_resume_loses_nothing(
        gateway, jwks, send):
    lifetime = 4
    short = token_of(jwks, "alice", lifetime=lifetime)
    expires_at = jwt.decode(short, options={"verify_signature": False})["exp"]
    client = open_stream(gateway.url, short, "history=false&event_types=orders.tick")
    assert client.status == 200
    sent, stop, again = [], threading.Event(), None

    def tick():
        n = 0
        while not stop.is_set():
            event = misc_event(n, "t", "orders.tick")
            send(gateway.misc, event, key="alice" if n % 2 else None, partition=n % 3)
            send.flush()
            sent.append(event["id"])
            n += 1
            time.sleep(0.05)

    ticker = in_background(tick)
    try:
        client.read_until(lambda evs: False, timeout=lifetime + 8)
        ended = time.time()
        assert client.closed, "the stream outlived its token"
        assert expires_at <= ended + 0.5 <= expires_at + 4.5, (expires_at, ended)
        final = client.events[-1]
        assert final["event"] == "auth-expired", client.body[-400:]
        assert json.loads(final["data"]) == {"reason": "token expired"}
        block = client.body.decode().rsplit("\n\n", 2)[-2]      # the final frame, on its own
        assert not any(line.startswith("id:") for line in block.splitlines()), block
        assert len(ids_of(client)) > 10
        # a new token, a new ticket, the last id: nothing lost, nothing twice
        again = open_stream(gateway.url, token_of(jwks, "alice"), "event_types=orders.tick",
                            last_id=client.parser.last_id)
        assert again.status == 200
        time.sleep(1.0)
    finally:
        stop.set()
        ticker.join(10)
    assert again is not None
    again.read_until(lambda evs: sent[-1] in ids_in(evs), timeout=15)
    again.read_for(0.3)
    exact(ids_of(client) + ids_of(again), set(sent), "before and after auth-expired")
    again.close()


def _grpc_api(svc):
    import grpc
    from rpc import sse_pb2 as pb, sse_pb2_grpc
    channel = grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}")
    return channel, sse_pb2_grpc.SSEManagementServiceStub(channel), pb


def test_disconnect_subject_ends_all_of_its_streams_and_no_others(gateway, jwks, send):
    import grpc
    query = "history=false&event_types=orders.revoke"
    carol = [open_stream(gateway.url, token_of(jwks, "carol", event_types=["orders.*"]), query)
             for _ in range(3)]
    dave = [open_stream(gateway.url, token_of(jwks, "dave", event_types=["orders.*"]), query)
            for _ in range(2)]
    assert all(c.status == 200 for c in carol + dave)
    channel, api, pb = _grpc_api(gateway)
    try:
        def ours():
            found = [c for c in api.GetClients(pb.GetClientsRequest(limit=1000),
                                               timeout=5).clients
                     if c.subject in ("carol", "dave")]
            return found if len(found) == 5 else None

        listed = wait_for(ours, what="the five streams listed with their subjects")
        assert sorted(c.subject for c in listed) == ["carol"] * 3 + ["dave"] * 2
        assert all("orders.*" in c.scope for c in listed), [c.scope for c in listed]
        reply = api.DisconnectSubject(pb.DisconnectSubjectRequest(subject="carol",
                                                                  reason="revoked"), timeout=5)
        assert reply.disconnected == 3
        for client in carol:
            client.read_until(lambda evs: False, timeout=5)
            assert client.closed, "a stream of carol is still open"
        send(gateway.misc, misc_event(0, "r", "orders.revoke"), partition=0)
        send.flush()
        for client in dave:
            client.read_until(lambda evs: ids_in(evs), timeout=10)
            assert ids_of(client) == ["r0"] and not client.closed
        again = api.DisconnectSubject(pb.DisconnectSubjectRequest(subject="carol"), timeout=5)
        assert again.disconnected == 0
        with pytest.raises(grpc.RpcError) as caught:
            api.DisconnectSubject(pb.DisconnectSubjectRequest(subject=""), timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        channel.close()
        close_all(carol + dave)


def test_a_stream_revoked_in_the_middle_of_a_kafka_replay_resumes_exactly(gateway, jwks,
                                                                           send):
    """A resume far back reads 8 MB from Kafka; DisconnectSubject ends it while that replay
    runs, and the next resume still gets nothing lost, twice or foreign."""
    wait_no_clients(gateway)
    query = "event_types=orders.deep"
    start = open_stream(gateway.url, token_of(jwks, "alice"), "history=false&" + query)
    start.read_until(lambda evs: start.parser.last_id, 5)
    position = start.parser.last_id
    start.close()
    pad, sent = "x" * 2000, []
    for n in range(4000):
        owner = ("alice", "bob", None)[n % 3]
        send(gateway.misc, {"id": f"q{n}", "type": "orders.deep", "source": "shop",
                            "data": {"n": n, "pad": pad}}, key=owner, partition=n % 3)
        sent.append((f"q{n}", owner))
    send.flush()
    want = {i for i, owner in sent if owner in (None, "alice")}

    revoked = open_stream(gateway.url, token_of(jwks, "alice"), query, last_id=position,
                          wait_open=False)
    channel, api, pb = _grpc_api(gateway)
    try:           # as soon as the stream is there (its request may still be on its way)
        deadline = time.monotonic() + 10
        while True:
            reply = api.DisconnectSubject(pb.DisconnectSubjectRequest(subject="alice",
                                                                      reason="revoked"), timeout=5)
            if reply.disconnected or time.monotonic() > deadline:
                break
            time.sleep(0.01)
    finally:
        channel.close()
    assert reply.disconnected == 1, (revoked.status, revoked.read_for(0.5))
    revoked.read_until(lambda evs: False, timeout=15)
    assert revoked.closed
    got = ids_of(revoked)
    assert len(got) < len(want), "the replay was over before the revocation: nothing tested"

    again = open_stream(gateway.url, token_of(jwks, "alice"), query,
                        last_id=revoked.parser.last_id, wait_open=False)
    again.read_until(lambda evs: len(got) + len(ids_in(evs)) >= len(want), timeout=30)
    again.read_for(0.3)
    exact(got + ids_of(again), want, "revoked mid-replay, then resumed")
    close_all([revoked, again])


def _refusal(status, head, body, token=None):
    text = body.decode(errors="replace") if isinstance(body, bytes) else json.dumps(body)
    if token:
        assert token not in text, "the credential is echoed in the answer"
        signature = token.rsplit(".", 1)[-1]
        assert len(signature) < 20 or signature not in text, "the signature is echoed"
    return json.loads(text)


def test_missing_and_bad_credentials_get_401_naming_the_reason_never_the_token(gateway, jwks):
    for method, path in (("GET", "/events"), ("POST", "/tickets")):
        status, head, body = request(gateway.url + path, method)
        answer = _refusal(status, head, body)
        assert status == 401 and answer["error"] == "unauthorized", (path, status, answer)
        assert head.get("Www-Authenticate", "").startswith("Bearer"), (path, head)

    stranger = SigningKey("RS256", kid=jwks.current.kid)          # right kid, wrong key
    now = time.time()
    bad = {
        "token expired": token_of(jwks, "alice", exp=now - 120),
        "token not yet valid": token_of(jwks, "alice", nbf=now + 600),
        "wrong audience": token_of(jwks, "alice", aud="someone-else"),
        "wrong issuer": token_of(jwks, "alice", iss="https://evil.test"),
        "bad signature": stranger.token("alice", aud=AUDIENCE, iss=ISSUER),
        "unknown key id": token_of(jwks, "alice", kid="no-such-kid"),
        "malformed token": remember("not-a-jwt-" + secrets.token_urlsafe(24)),
        "algorithm not accepted": remember(jwt.encode(
            {"sub": "alice", "exp": int(now) + 300}, None, algorithm="none")),
    }
    for reason, token in bad.items():
        for method, path in (("GET", "/events"), ("POST", "/tickets")):
            status, head, body = request(gateway.url + path, method, bearer(token))
            answer = _refusal(status, head, body, token)
            assert status == 401, (reason, path, status, answer)
            assert reason in answer["message"], (reason, path, answer)
    # a bearer token on /events itself is fine (fetch-based clients, curl)
    ok = SSEClient(gateway.url + "/events?history=false", headers=bearer(token_of(jwks, "bob")))
    assert ok.status == 200
    ok.close()
    # a forged or tampered ticket
    good = ticket(gateway.url, token_of(jwks, "bob"))
    for forged in (good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"), "x.y", "%00"):
        status, head, body = request(events_url(gateway.url, "", forged))
        assert status == 401 and "ticket" in _refusal(status, head, body, forged)["message"]


def test_a_token_in_the_url_is_refused_with_400_pointing_to_tickets(gateway, jwks):
    token = token_of(jwks, "alice")
    for name in ("access_token", "token", "jwt"):
        status, head, body = request(f"{gateway.url}/events?{name}={token}")
        answer = _refusal(status, head, body, token)
        assert status == 400 and answer["error"] == "bad_request", (name, status, answer)
        assert "ticket" in answer["message"], answer


def test_a_request_wholly_outside_the_scope_is_403_naming_it(gateway, jwks):
    token = token_of(jwks, "alice")                      # orders.*, news.*
    client = SSEClient(gateway.url + "/events?event_types=chat.*", headers=bearer(token))
    answer = client.json()
    assert client.status == 403 and answer["error"] == "forbidden", (client.status, answer)
    assert "outside your scope" in answer["message"] and "chat.*" in answer["message"]
    client.close()
    status, head, body = request(events_url(gateway.url, "event_types=chat.*",
                                            ticket(gateway.url, token)))
    assert status == 403, (status, body)
    partly = open_stream(gateway.url, token, "history=false&event_types=chat.*,news.posted")
    assert partly.status == 200                           # partly inside: narrowed, not refused
    partly.close()
    mistaken = ticket(gateway.url, token)                 # a credential put in the filter
    status, head, body = request(f"{gateway.url}/events?event_types={mistaken}",
                                 headers=bearer(token))
    assert status == 403 and mistaken not in body.decode() and "***" in body.decode(), body


def test_streams_past_the_per_subject_limit_get_429(gateway, jwks):
    wait_no_clients(gateway)
    token = token_of(jwks, "erin", event_types=["orders.*"])
    held = [open_stream(gateway.url, token, "history=false") for _ in range(PER_SUBJECT)]
    try:
        assert all(c.status == 200 for c in held), [c.status for c in held]
        refused = open_stream(gateway.url, token, "history=false")
        answer = refused.json()
        assert refused.status == 429, (refused.status, answer)
        assert answer["error"] == "too_many_streams_per_subject", answer
        assert int(refused.headers.get("Retry-After", "0")) > 0, refused.headers
        other = open_stream(gateway.url, token_of(jwks, "frank", event_types=["orders.*"]),
                            "history=false")
        assert other.status == 200                        # another subject is not limited
        other.close()
    finally:
        close_all(held)
    wait_no_clients(gateway)
    again = open_stream(gateway.url, token, "history=false")
    assert again.status == 200
    again.close()


def test_a_ticket_is_single_use_and_issued_as_documented(gateway, jwks):
    status, body, _ = post_ticket(gateway.url, token_of(jwks, "bob"))
    assert status == 201 and set(body) >= {"ticket", "expires_in", "expires_at"}, body
    assert 0 < body["expires_in"] <= 30
    url = events_url(gateway.url, "history=false", body["ticket"])
    first = SSEClient(url)
    assert first.status == 200
    first.close()
    status, head, raw = request(url)
    answer = _refusal(status, head, raw, body["ticket"])
    assert status == 401 and "ticket already used" in answer["message"], answer


def test_a_rotated_jwks_key_is_fetched_on_its_unknown_kid(gateway, jwks):
    old = token_of(jwks, "bob")
    fetched = jwks.fetches
    time.sleep(1.2)                                       # AUTH_JWKS_REFRESH_SECONDS=1
    jwks.rotate()
    new = token_of(jwks, "bob")
    status, body, _ = post_ticket(gateway.url, new)
    assert status == 201, body
    assert jwks.fetches > fetched
    assert post_ticket(gateway.url, old)[0] == 201         # the old key is still published


def test_owner_at_a_data_path_hs256_and_tickets_across_instances(gateway, jwks, kafka, send,
                                                                 tmp_path_factory):
    """A second instance: HS256 bearer tokens, owners at data.user.id, the module gateway's
    ticket secret and 2-second tickets. A ticket of the other instance works here (once), and
    so does one of an older release (version 1); a stream outlives its ticket (it lasts as
    long as the token); an unused ticket expires."""
    topic = _create_topics(kafka, "auth-data")["auth-data"]
    secret = remember(secrets.token_hex(24))            # 48 characters
    svc = Service(kafka.bootstrap, [topic], tmp_path_factory.mktemp("auth-data") / "gunicorn.log",
                  WORKERS=1, AUTH_MODE="required", AUTH_JWT_ALGORITHMS="HS256",
                  AUTH_JWT_SECRET=secret, AUTH_SUBJECT_FIELD="data.user.id",
                  AUTH_TICKET_SECRET=gateway.ticket_secret, AUTH_TICKET_TTL_SECONDS=2,
                  ACCESS_LOG="true", LOG_LEVEL="DEBUG")     # every log line, for the last test
    DATA_LOGS.append(svc.log_path)
    svc.start(expect_partitions=3)
    try:
        owners = ["alice", "bob", None, "carol", "alice", ["alice"], "bob", None]
        events = []
        for n in range(400):
            owner = owners[n % len(owners)]
            user = {} if owner is None else {"id": owner}
            events.append(({"id": f"d{n}", "type": "orders.created", "source": "shop",
                            "data": {"n": n, "user": user}}, owner))
        tokens = {s: hs256_token(secret.encode(), s, event_types=["orders.*"])
                  for s in ("alice", "bob")}
        streams = {s: [SSEClient(f"{svc.url}/events?history=false", headers=bearer(tokens[s]))
                       for _ in range(3)] for s in tokens}
        # a ticket of the other instance (same AUTH_TICKET_SECRET), good here once
        elsewhere = ticket(gateway.url, token_of(jwks, "alice"))
        streams["alice"].append(SSEClient(events_url(svc.url, "history=false", elsewhere)))
        status, _, body = request(events_url(svc.url, "history=false", elsewhere))
        assert status == 401 and b"ticket already used" in body, (status, body)
        # a ticket as older releases issue them (version 1), in a rolling deploy: good once
        older = older_ticket(gateway.ticket_secret, "alice")
        streams["alice"].append(SSEClient(events_url(svc.url, "history=false", older)))
        status, _, body = request(events_url(svc.url, "history=false", older))
        assert status == 401 and b"ticket already used" in body, (status, body)
        # this instance's tickets last 2 s: the stream opened with one lives on, an unused
        # one is refused after that
        status, issued, _ = post_ticket(svc.url, tokens["bob"])
        assert status == 201 and issued["expires_in"] <= 2, issued
        streams["bob"].append(SSEClient(events_url(svc.url, "history=false",
                                                   ticket(svc.url, tokens["bob"]))))
        clients = [c for group in streams.values() for c in group]
        assert all(c.status == 200 for c in clients), [c.body[:200] for c in clients]
        drain(clients, lambda: all(c.parser.comments for c in clients), 10)
        time.sleep(2.5)
        status, _, body = request(events_url(svc.url, "history=false", issued["ticket"]))
        assert status == 401 and b"ticket expired" in body, (status, body)
        for event, _ in events:
            send(topic, event, partition=int(event["id"][1:]) % 3)
        send.flush()
        want = {s: {e["id"] for e, o in events if o is None or o == s} for s in streams}
        drain(clients, lambda: all(len(ids_of(c)) >= len(want[s]) for s, g in streams.items()
                                   for c in g), 30)
        drain(clients, lambda: False, 0.3)
        for subject, group in streams.items():
            for n, client in enumerate(group):
                assert not client.closed, f"{subject} #{n} was closed"
                exact(ids_of(client), want[subject], f"{subject} #{n} (data.user.id)")
        close_all(clients)
    finally:
        svc.stop()


DATA_LOGS: list = []


def test_no_token_or_ticket_appears_in_any_log_line(gateway):
    """Last in this file: every token and ticket used above (and the ticket secret) against the
    services' whole log output."""
    assert len(SECRETS_SEEN) >= 5, "no token or ticket was made: nothing to look for"
    text = gateway.log_path.read_text(errors="replace")
    for path in DATA_LOGS:
        text += path.read_text(errors="replace")
    assert "ticket=" in text or "/tickets" in text, "the access log is not on: nothing to check"
    assert not log_leaks(text), log_leaks(text)[:5]
