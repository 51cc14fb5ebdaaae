"""Tickets of tokens with long scopes, against real Kafka and gunicorn.

A ticket carries the token's whole scope. One of some dozens of event types was accepted as a
bearer, and POST /tickets answered 201 with a ticket longer than a request line (4,094 bytes):
`GET /events?ticket=` was 414 every time, so an EventSource client of that subject could not
connect at all (an auth audit). Such a ticket is now deflated; one that still would not fit is
refused by POST /tickets with 422, saying to send the token as a bearer instead."""
import json
import secrets

import pytest

from tests.authtools import events_url, hs256_token, post_ticket, remember
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e

# 60 event types of a realistic, explicit scope (no wildcard): about 3.8 KB of claim
TYPES = [f"orders.region-{r}.customer-segment-{s}.item.created.v{v}"
         for r in ("eu-west", "us-east", "ap-south") for s in ("premium", "standard")
         for v in range(10)]


@pytest.fixture
def gateway(topics, service):
    secret = remember(secrets.token_hex(24))
    svc = service(list(topics("wide-scope").values()), expect_partitions=3, WORKERS=1,
                  AUTH_MODE="required", AUTH_JWT_ALGORITHMS="HS256", AUTH_JWT_SECRET=secret,
                  AUTH_TICKET_SECRET=remember(secrets.token_urlsafe(40)))
    svc.secret = secret.encode()
    return svc


def test_a_ticket_issued_for_an_accepted_token_opens_a_stream(gateway):
    token = hs256_token(gateway.secret, "alice", event_types=TYPES, sources=["*"])
    assert len(token) < 8000            # fits a header: the token itself is fine
    as_bearer = SSEClient(f"{gateway.url}/events?history=false",
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)
    try:
        assert as_bearer.status == 200      # the token is accepted
    finally:
        as_bearer.close()
    status, body, _ = post_ticket(gateway.url, token)
    assert status == 201, body              # and a ticket is issued for it
    client = SSEClient(events_url(gateway.url, "history=false", body["ticket"]), timeout=10)
    try:
        assert client.status == 200, (
            f"the ticket POST /tickets issued ({len(body['ticket'])} characters) is refused "
            f"by GET /events with {client.status}: {client.body[:200]!r}")
    finally:
        client.close()


def test_a_token_whose_ticket_could_fit_no_url_gets_422_saying_what_to_do(gateway):
    # random patterns (they do not deflate): a token that still fits a header line of 8,190
    types, sources = ([secrets.token_urlsafe(44) for _ in range(45)] for _ in range(2))
    token = hs256_token(gateway.secret, "alice", event_types=types, sources=sources)
    status, body, _ = post_ticket(gateway.url, token)
    assert status == 422 and body["error"] == "ticket_too_large", body
    assert "Authorization: Bearer" in body["message"]


def test_a_resume_in_the_url_beside_a_ticket_fits_a_request_line_of_8190(gateway, producer):
    """The README's ticket recipe sends the resume id in the URL (`EventSource` sends no header
    of ours): with a long filter, or an id over many partitions (about 4,000 characters at
    1,000 partitions whose offsets differ by millions), the request line passed gunicorn's
    4,094 and every reconnect was 414 (a Kafka-scale audit). It takes 8,190 now, what a
    Last-Event-ID header may hold too."""
    topic = gateway.topics[0]
    token = hs256_token(gateway.secret, "alice", event_types=["*"], sources=["*"])
    types = ",".join(f"orders.region-{n:03}.customer-segment-premium.item.created"
                     for n in range(100))           # the most a filter lists: 5,600 characters
    status, body, _ = post_ticket(gateway.url, token)
    assert status == 201, body
    first = SSEClient(events_url(gateway.url, f"history=false&event_types={types}",
                                 body["ticket"]), timeout=10)
    try:
        assert first.status == 200, (first.status, first.body[:200])
        first.read_until(lambda _events: first.parser.comments, timeout=10)     # subscribed
        producer(topic, {"id": "e1", "source": "shop", "data": {},
                         "type": "orders.region-007.customer-segment-premium.item.created"}
                 ).get(10)
        [event] = first.read_count(1, timeout=15)
    finally:
        first.close()
    producer(topic, {"id": "e2", "source": "shop", "data": {},
                     "type": "orders.region-008.customer-segment-premium.item.created"}).get(10)
    status, body, _ = post_ticket(gateway.url, token)
    line = f"history=false&event_types={types}&last_event_id={event['id']}"
    again = SSEClient(events_url(gateway.url, line, body["ticket"]), timeout=10)
    try:
        assert again.status == 200, (again.status, again.body[:200])
        assert [json.loads(e["data"])["id"] for e in again.read_count(1, timeout=15)] == ["e2"]
    finally:
        again.close()
