"""Against a broker with Kafka's default auto.create.topics.enable=true (the suite's own broker
turns it off): the gateway reads topics, it never creates one."""
import time

import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from tests.harness import LocalKafka, Service, free_port_pair, http_json

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def default_kafka():
    broker = LocalKafka(free_port_pair())
    broker.env["KAFKA_LOCAL_OVERRIDES"] = "auto.create.topics.enable=true"
    broker.start()
    yield broker
    broker.reset()


def _admin(broker):
    return KafkaAdminClient(bootstrap_servers=[broker.bootstrap])


def _listed(broker) -> set:
    admin = _admin(broker)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def test_a_misspelt_topic_is_reported_not_created(default_kafka, tmp_path):
    """kafka-python asked for metadata allowing auto-creation: the typo became a topic and the
    README's 'does not exist' warning never came."""
    admin = _admin(default_kafka)
    admin.create_topics([NewTopic("blog.posts", 3, 1)])
    admin.close()
    svc = Service(default_kafka.bootstrap, ["blog.posts", "blog.psots"], tmp_path / "svc.log",
                  SSE_HEARTBEAT_SECONDS=1).start(expect_partitions=3)
    try:
        deadline, detail = time.monotonic() + 15, ""
        while "blog.psots does not exist" not in detail and time.monotonic() < deadline:
            time.sleep(0.5)
            detail = http_json(svc.url + "/health")[1]["kafka"]["detail"]
        assert "blog.psots does not exist" in detail
        assert "blog.psots" not in _listed(default_kafka)
    finally:
        svc.stop()


def test_a_topic_an_operator_deletes_stays_deleted(default_kafka, tmp_path):
    admin = _admin(default_kafka)
    admin.create_topics([NewTopic("old.events", 3, 1), NewTopic("keep.events", 3, 1)])
    svc = Service(default_kafka.bootstrap, ["old.events", "keep.events"], tmp_path / "svc.log",
                  SSE_HEARTBEAT_SECONDS=1).start(expect_partitions=6)
    try:
        admin.delete_topics(["old.events"])
        deadline, detail = time.monotonic() + 15, ""
        while "no longer exists" not in detail and time.monotonic() < deadline:
            time.sleep(0.5)
            detail = http_json(svc.url + "/health")[1]["kafka"]["detail"]
        assert "old.events no longer exists" in detail, detail
        time.sleep(2)                       # a metadata refresh or two later
        assert "old.events" not in _listed(default_kafka)
    finally:
        admin.close()
        svc.stop()
