"""Private events whose owner is a record header (AUTH_SUBJECT_FIELD=header:<name>), end to
end: live, resumed from Kafka (a history of 3 cannot serve the resume), `since` and the
history; the header's name in any case, as Kafka clients send it."""
from __future__ import annotations

import json
import time

import jwt
import pytest

from tests.authtools import bearer, payloads
from tests.harness import Service
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e
SECRET = "s" * 40
GRACE_S = 0.5           # after the last expected event: time for one that should not come


def token(subject: str) -> str:
    return jwt.encode({"sub": subject, "exp": int(time.time()) + 600,
                       "sse": {"event_types": ["*"], "sources": ["*"]}}, SECRET, "HS256")


def ids_read(url: str, subject: str, count: int, **headers) -> list[str]:
    client = SSEClient(url, headers={**bearer(token(subject)), **headers}, timeout=15)
    try:
        client.read_until(lambda evs: len(payloads(evs)) >= count, timeout=15)
        client.read_for(GRACE_S)
        return [p["id"] for p in payloads(client.events)]
    finally:
        client.close()


def test_header_owners_live_resumed_from_kafka_since_and_history(kafka, topics, tmp_path):
    from kafka import KafkaProducer
    topic = topics("owner-header", partitions=2)["owner-header"]
    svc = Service(kafka.bootstrap, [topic], tmp_path / "gateway.log", AUTH_MODE="required",
                  AUTH_JWT_ALGORITHMS="HS256", AUTH_JWT_SECRET=SECRET,
                  AUTH_SUBJECT_FIELD="header:user-id", SSE_HISTORY_SIZE=3)
    svc.start(expect_partitions=2)
    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], linger_ms=5)
    plan = [("alice", "user-id"), ("bob", "USER-ID"), (None, None), ("alice", "User-Id"),
            ("carol", "user-id"), (None, None), ("bob", "user-id"), ("alice", "user-id")]
    owners = {f"e{n}": owner for n, (owner, _name) in enumerate(plan)}

    def wanted(subject):
        return sorted(i for i, owner in owners.items() if owner in (None, subject))
    try:
        live = {s: SSEClient(f"{svc.url}/events", headers=bearer(token(s)), timeout=15)
                for s in ("alice", "bob")}
        for client in live.values():
            client.read_until(lambda evs, c=client: c.parser.comments, timeout=15)
        for n, (owner, name) in enumerate(plan):
            producer.send(topic, json.dumps({"id": f"e{n}", "type": "t", "source": "s",
                                             "data": {"n": n}}).encode(),
                          headers=[(name, owner.encode())] if owner else [], partition=n % 2)
        producer.flush()
        first = {}
        for subject, client in live.items():
            client.read_until(lambda evs, s=subject: len(payloads(evs)) >= len(wanted(s)), 15)
            client.read_for(GRACE_S)
            assert sorted(p["id"] for p in payloads(client.events)) == wanted(subject), subject
            event = next(e for e in client.events if e["event"] != "gap")
            first[subject] = (event["id"], json.loads(event["data"])["id"])
            client.close()
        for subject in ("alice", "bob"):
            sse_id, seen = first[subject]
            resumed = ids_read(f"{svc.url}/events", subject, len(wanted(subject)) - 1,
                               **{"Last-Event-ID": sse_id})
            assert sorted(resumed) == [i for i in wanted(subject) if i != seen], (
                subject, "resumed", resumed)
            assert sorted(ids_read(f"{svc.url}/events?since=0", subject,
                                   len(wanted(subject)))) == wanted(subject), (subject, "since")
            history = ids_read(f"{svc.url}/events", subject, 1)
            assert set(history) <= set(wanted(subject)), (subject, "history", history)
    finally:
        producer.close(timeout=5)
        svc.stop()
