"""Fixtures: one real Kafka broker per test session, and gunicorn services per test."""
from __future__ import annotations

import json
import logging
import uuid

import pytest

from tests.harness import KafkaCluster, LocalKafka, SecureKafka, Service


def _started(kind, attempts=3):
    """A broker (or cluster) of `kind` started on free ports; a port taken between the pick
    and the broker's bind costs a retry on other ports, not the session's Kafka tests."""
    for attempt in range(1, attempts + 1):
        broker = kind.on_free_ports()
        try:
            broker.start()
            return broker
        except RuntimeError as e:
            broker.reset()   # stops the nodes that did start
            if "Address already in use" not in str(e) or attempt == attempts:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(autouse=True)
def _root_logger_kept():
    """What a test does to the root logger (gunicorn's logger setup gives the master's a
    handler of stderr, actors.logs.configure a worker's) stays in that test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


@pytest.fixture(scope="session")
def kafka():
    broker = _started(LocalKafka)
    yield broker
    broker.reset()


@pytest.fixture(scope="session")
def secure_kafka():
    """A broker with SASL_SSL, SSL (mutual TLS), SASL_PLAINTEXT and PLAINTEXT listeners, users
    and ACLs (tests.harness.SecureKafka); started only for the tests that use it."""
    broker = _started(SecureKafka)
    yield broker
    broker.reset()


@pytest.fixture(scope="session")
def kafka_cluster():
    """A 3-node KRaft cluster, replication factor 3 (tests.harness.KafkaCluster). A test that
    kills or stops a node must start it again (start_node) before it ends."""
    cluster = _started(KafkaCluster)
    yield cluster
    cluster.reset()


@pytest.fixture
def topics(kafka):
    """Fresh topics for one test (3 partitions each): name -> topic."""
    from kafka.admin import KafkaAdminClient, NewTopic
    made = {}

    def create(*names, partitions=3, config=None):
        suffix = uuid.uuid4().hex[:8]
        new = {name: f"{name}.{suffix}" for name in names}
        admin = KafkaAdminClient(bootstrap_servers=[kafka.bootstrap])
        try:
            admin.create_topics([NewTopic(t, partitions, 1, topic_configs=config or {})
                                 for t in new.values()])
        finally:
            admin.close()
        made.update(new)
        return new

    return create


@pytest.fixture
def producer(kafka):
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=[kafka.bootstrap], linger_ms=0)

    def send(topic, value, partition=None, headers=None):
        if isinstance(value, dict):
            value = json.dumps(value).encode()
        return p.send(topic, value, partition=partition, headers=headers)

    send.flush = lambda: p.flush(timeout=10)
    yield send
    p.close(timeout=5)


@pytest.fixture
def service(kafka, tmp_path):
    started = []

    def start(topic_names, expect_partitions=None, **env):
        svc = Service(kafka.bootstrap, topic_names, tmp_path / f"gunicorn-{len(started)}.log", **env)
        started.append(svc)
        return svc.start(expect_partitions)

    yield start
    for svc in started:
        try:
            svc.stop()
        except Exception:  # noqa: BLE001 - report the test's own failure, not teardown's
            pass

