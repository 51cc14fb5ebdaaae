"""Subscriber auth on an instance of several workers (issues 14 and 15): a ticket is usable
once per instance, whichever worker takes each attempt, and the per-subject limit counts the
streams of every worker."""
import secrets
import urllib.request

import pytest

from tests.authtools import events_url, hs256_token, post_ticket, remember
from tests.harness import eventually, http_json
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e

ATTEMPTS = 8     # new connections per ticket: with two workers, both see some of them


@pytest.fixture
def two_workers(topics, service):
    secret = remember(secrets.token_hex(24))
    svc = service(list(topics("auth-workers").values()), expect_partitions=3, WORKERS=2,
                  AUTH_MODE="required", AUTH_JWT_ALGORITHMS="HS256", AUTH_JWT_SECRET=secret,
                  AUTH_TICKET_SECRET=remember(secrets.token_urlsafe(40)),
                  SSE_MAX_CLIENTS_PER_SUBJECT=3)
    svc.token = hs256_token(secret.encode(), "alice")
    svc.other_token = hs256_token(secret.encode(), "bob")
    return svc


def test_a_ticket_opens_one_stream_per_instance_not_one_per_worker(two_workers):
    svc = two_workers
    for _ in range(3):
        status, body, _ = post_ticket(svc.url, svc.token)
        assert status == 201, body
        statuses = []
        for _ in range(ATTEMPTS):
            client = SSEClient(events_url(svc.url, "history=false", body["ticket"]))
            statuses.append(client.status)
            client.close()
        assert statuses.count(200) == 1 and statuses.count(401) == ATTEMPTS - 1, statuses


def test_the_per_subject_limit_counts_the_streams_of_every_worker(two_workers):
    svc = two_workers
    held = []
    try:
        for _ in range(8):
            status, body, _ = post_ticket(svc.url, svc.token)
            held.append(SSEClient(events_url(svc.url, "history=false", body["ticket"])))
        assert [c.status for c in held] == [200] * 3 + [429] * 5
        status, body, _ = post_ticket(svc.url, svc.other_token)
        held.append(SSEClient(events_url(svc.url, "history=false", body["ticket"])))
        assert held[-1].status == 200
        # the instance's figures, whichever worker answers: alice and bob
        for _ in range(4):
            assert subjects_streaming(svc) == 2
            assert "sse_stream_subjects 2.0" in metrics_text(svc.url)
    finally:
        for client in held:
            client.close()
    assert eventually(lambda: subjects_streaming(svc) == 0)


def subjects_streaming(svc) -> int:
    return http_json(svc.url + "/stats")[1]["limiter"]["subjects_streaming"]


def metrics_text(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as answer:
        return answer.read().decode()
