"""The real-cluster modes of scripts/kafka-local, proven with plain kafka-python clients (no
gateway): SASL_SSL/SASL_PLAINTEXT with PLAIN and SCRAM, mutual TLS, ACLs, a 3-node cluster
surviving a leader's kill -9, Kafka's Java producer with every codec, transactions."""
import importlib
import logging
import os
import threading
import time
import uuid

import pytest

from tests.kafkatools import (delete_scram_user, deny_topic, java_produce, record_batches,
                              remove_acls, set_scram_user, transactional_produce)

pytestmark = pytest.mark.e2e

FAIL_FAST = {"bootstrap_timeout_ms": 3000}   # a refused client gives up in 3 s, not 30


def _topic(admin_bootstrap, partitions=1, replication=1, prefix="modes"):
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    name = f"{prefix}.{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=admin_bootstrap.split(","))
    try:
        admin.create_topics([NewTopic(name, partitions, replication)])
    finally:
        admin.close()
    return name


def _produce(config, topic, values, **kw):
    from kafka import KafkaProducer
    producer = KafkaProducer(linger_ms=0, **config, **kw)
    try:
        for v in values:
            producer.send(topic, v.encode(), partition=0).get(timeout=30)
    finally:
        producer.close(timeout=10)


def _consume(config, topic, count, partitions=(0,), timeout=30.0, settle=0.0, **kw):
    """Values of the records of the partitions, from the start, once `count` have arrived (or at
    the timeout), and whatever else arrives within `settle` seconds after that."""
    from kafka import KafkaConsumer, TopicPartition
    consumer = KafkaConsumer(auto_offset_reset="earliest", enable_auto_commit=False, **config, **kw)
    try:
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                got.extend(r.value.decode() for r in records)
        settled = time.monotonic() + settle
        while time.monotonic() < settled:
            for records in consumer.poll(timeout_ms=200).values():
                got.extend(r.value.decode() for r in records)
        return got
    finally:
        consumer.close()


def _refused(config, caplog):
    """Try to connect; returns kafka-python's log text of the attempt (the connection must fail)."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaTimeoutError
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="kafka"):
        with pytest.raises(KafkaTimeoutError):
            KafkaConsumer(**config, **FAIL_FAST).close()
    return caplog.text


# ---- secure single broker ------------------------------------------------------------------------

@pytest.mark.parametrize("protocol, mechanism", [
    ("SASL_SSL", "SCRAM-SHA-512"), ("SASL_SSL", "SCRAM-SHA-256"), ("SASL_SSL", "PLAIN"),
    ("SASL_PLAINTEXT", "SCRAM-SHA-256"), ("SASL_PLAINTEXT", "PLAIN")])
def test_sasl_round_trip(secure_kafka, protocol, mechanism):
    topic = _topic(secure_kafka.plaintext_bootstrap)
    config = secure_kafka.client_config(protocol, mechanism, user="alice")
    values = [f"{mechanism}-{i}" for i in range(5)]
    _produce(config, topic, values)
    assert _consume(config, topic, 5) == values
    # and the records are really in the topic, as the admin listener sees them
    assert _consume({"bootstrap_servers": [secure_kafka.plaintext_bootstrap]}, topic, 5) == values


def _broker_logged(broker, mark, text, timeout=10.0):
    deadline = time.monotonic() + timeout
    while text not in broker.log_text(mark):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


REFUSAL = {"SCRAM-SHA-512": "invalid credentials with SASL mechanism SCRAM-SHA-512",
           "PLAIN": "Authentication failed: Invalid username or password"}


@pytest.mark.parametrize("mechanism", list(REFUSAL))
def test_sasl_ssl_wrong_password_is_refused(secure_kafka, caplog, mechanism):
    for user, password in [("alice", "wrong"), ("mallory", "x")]:
        mark = secure_kafka.log_mark()
        log = _refused(secure_kafka.client_config("SASL_SSL", mechanism, user, password=password), caplog)
        assert "SaslAuthenticateRequest" in log       # TLS passed; SASL refused
        assert _broker_logged(secure_kafka, mark, REFUSAL[mechanism])


def test_scram_user_created_at_run_time(secure_kafka, caplog):
    topic = _topic(secure_kafka.plaintext_bootstrap)
    user = f"late-{uuid.uuid4().hex[:6]}"
    config = secure_kafka.client_config("SASL_SSL", "SCRAM-SHA-512", user, password="late-secret")
    _refused(config, caplog)                          # unknown until the admin creates it
    set_scram_user(secure_kafka.plaintext_bootstrap, user, "late-secret")
    try:
        deadline = time.monotonic() + 20
        while True:                                   # the broker learns it from the metadata log
            try:
                _produce(config, topic, ["late"], **FAIL_FAST)
                break
            except Exception:  # noqa: BLE001 - not yet known
                assert time.monotonic() < deadline, f"SCRAM user {user} still refused"
        assert _consume(config, topic, 1) == ["late"]
    finally:
        delete_scram_user(secure_kafka.plaintext_bootstrap, user)


def test_sasl_ssl_wrong_ca_is_refused(secure_kafka, caplog):
    config = secure_kafka.client_config("SASL_SSL", "SCRAM-SHA-512", ssl_cafile=secure_kafka.other_ca_file)
    assert "CERTIFICATE_VERIFY_FAILED" in _refused(config, caplog)


def test_broker_certificate_names_localhost_and_loopback(secure_kafka):
    topic = _topic(secure_kafka.plaintext_bootstrap)
    port = secure_kafka.sasl_ssl_bootstrap.rsplit(":", 1)[1]
    config = secure_kafka.client_config("SASL_SSL", "PLAIN", bootstrap_servers=[f"localhost:{port}"],
                                        ssl_check_hostname=True)
    _produce(config, topic, ["by-name"])
    assert _consume(config, topic, 1) == ["by-name"]


def test_mutual_tls(secure_kafka, caplog):
    topic = _topic(secure_kafka.plaintext_bootstrap)
    with_cert = secure_kafka.client_config("SSL")
    _produce(with_cert, topic, ["mtls-1", "mtls-2"])
    assert _consume(with_cert, topic, 2) == ["mtls-1", "mtls-2"]
    encrypted_key = secure_kafka.client_config(
        "SSL", ssl_keyfile=secure_kafka.client_key_encrypted_file,
        ssl_password=secure_kafka.client_key_password)
    assert _consume(encrypted_key, topic, 2) == ["mtls-1", "mtls-2"]

    no_cert = secure_kafka.client_config("SSL", ssl_certfile=None, ssl_keyfile=None)
    unknown_issuer = secure_kafka.client_config("SSL", ssl_certfile=secure_kafka.other_client_cert_file,
                                                ssl_keyfile=secure_kafka.other_client_key_file)
    for refused in (no_cert, unknown_issuer):
        mark = secure_kafka.log_mark()
        assert "ALERT" in _refused(refused, caplog)   # the broker's TLS alert, as the client saw it
        assert _broker_logged(secure_kafka, mark, "(SSL handshake failed)")


def test_acl_denies_one_user_until_removed(secure_kafka):
    from kafka.errors import TopicAuthorizationFailedError
    topic = _topic(secure_kafka.plaintext_bootstrap)
    alice = secure_kafka.client_config("SASL_SSL", "SCRAM-SHA-512", "alice")
    bob = secure_kafka.client_config("SASL_SSL", "SCRAM-SHA-512", "bob")
    _produce(alice, topic, ["acl-1"])
    assert _consume(bob, topic, 1) == ["acl-1"]          # no ACL: everyone may read

    acls = deny_topic(secure_kafka.plaintext_bootstrap, topic, "bob")
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            _consume(bob, topic, 1, timeout=10)
        assert _consume(alice, topic, 1) == ["acl-1"]
    finally:
        remove_acls(secure_kafka.plaintext_bootstrap, acls)

    def bob_reads():
        try:
            return _consume(bob, topic, 1, timeout=5) == ["acl-1"]
        except TopicAuthorizationFailedError:
            return False
    deadline = time.monotonic() + 20
    while not bob_reads():
        assert time.monotonic() < deadline, "bob still refused after the ACLs were removed"
        time.sleep(0.5)


# ---- 3-node cluster ------------------------------------------------------------------------------

def test_cluster_survives_the_leaders_kill_and_it_rejoins(kafka_cluster):
    from kafka import KafkaProducer
    cluster = kafka_cluster
    assert all(cluster.node_running(n) for n in (1, 2, 3))
    topic = _topic(cluster.bootstrap, partitions=1, replication=3)
    state = cluster.partition_state(topic, 0)
    assert sorted(state["replica_nodes"]) == [1, 2, 3]
    cluster.wait_for_isr(topic, 0, 3)
    leader = cluster.leader_of(topic, 0)

    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers, acks="all", linger_ms=5,
                             retries=2 ** 31 - 1, delivery_timeout_ms=120000)
    sent, errors = [], []
    stop = threading.Event()

    def keep_producing():
        i = 0
        while not stop.is_set():
            sent.append(producer.send(topic, f"v{i}".encode(), partition=0))
            i += 1
            time.sleep(0.01)

    writer = threading.Thread(target=keep_producing, daemon=True)
    writer.start()
    try:
        time.sleep(2)
        before_kill = len(sent)
        cluster.kill_node(leader)
        assert not cluster.node_running(leader)
        new_leader = cluster.wait_for_leader(topic, 0, not_node=leader, timeout=60)
        time.sleep(3)                                # keep producing under the new leader
        assert len(sent) > before_kill + 50
    finally:
        stop.set()
        writer.join(10)
        producer.flush(timeout=120)
        for fut in sent:
            try:
                fut.get(timeout=1)
            except Exception as err:  # noqa: BLE001 - collected, asserted below
                errors.append(err)
        producer.close(timeout=10)
        cluster.start_node(leader)                    # the next test gets 3 nodes again
    assert errors == [], f"{len(errors)} of {len(sent)} acks=all sends failed: {errors[:3]}"
    assert new_leader in (1, 2, 3) and new_leader != leader

    assert cluster.wait_for_isr(topic, 0, 3, timeout=90) == [1, 2, 3]   # the killed node rejoined
    got = _consume({"bootstrap_servers": cluster.bootstrap_servers}, topic, len(sent), timeout=60,
                   settle=2)
    assert got == [f"v{i}" for i in range(len(sent))]  # nothing lost, nothing doubled, in order


# ---- Kafka's Java producer, every codec --------------------------------------------------------

CODEC_MODULES = {"gzip": None, "snappy": "snappy", "lz4": "lz4.frame", "zstd": "zstandard"}


@pytest.mark.parametrize("codec", list(CODEC_MODULES))
def test_java_producer_batches_with_each_codec(kafka, codec):
    module = CODEC_MODULES[codec]
    if module:
        try:
            importlib.import_module(module)
        except ImportError:
            if os.environ.get("CI") == "true":
                raise
            pytest.skip(f"kafka-python cannot decode {codec} without the {module} module")
    topic = _topic(kafka.bootstrap)
    values = [f'{{"id": "{codec}-{i}", "pad": "{"x" * 40}"}}' for i in range(40)]
    java_produce(kafka.bootstrap, topic, values, compression=codec)

    batches = [b for b in record_batches(kafka.log_dir, topic, 0) if not b.control]
    assert [(b.codec, b.records) for b in batches] == [(codec, 40)]   # one compressed batch
    assert _consume({"bootstrap_servers": [kafka.bootstrap]}, topic, 40, settle=0.5) == values


def test_java_producer_over_sasl_ssl(secure_kafka):
    topic = _topic(secure_kafka.plaintext_bootstrap)
    config = secure_kafka.client_config("SASL_SSL", "SCRAM-SHA-512")
    java_produce(secure_kafka.sasl_ssl_bootstrap, topic, ["j1", "j2"], compression="gzip", config=config)
    assert _consume(config, topic, 2) == ["j1", "j2"]


# ---- transactions ------------------------------------------------------------------------------

def test_transactional_producer_commits_one_batch_and_aborts_another(kafka):
    topic = _topic(kafka.bootstrap)
    offsets = transactional_produce(kafka.bootstrap, topic, [
        (["c1", "c2", "c3"], True), (["a1", "a2"], False), (["c4"], True)])
    assert offsets == [[0, 1, 2], [4, 5], [7]]        # a marker after each transaction
    plain = {"bootstrap_servers": [kafka.bootstrap]}
    assert _consume(plain, topic, 4, isolation_level="read_committed", timeout=10) == ["c1", "c2", "c3", "c4"]
    assert _consume(plain, topic, 6, isolation_level="read_uncommitted", timeout=10) == [
        "c1", "c2", "c3", "a1", "a2", "c4"]
    batches = record_batches(kafka.log_dir, topic, 0)
    assert [(b.base_offset, b.transactional, b.control) for b in batches] == [
        (0, True, False), (3, True, True), (4, True, False), (6, True, True), (7, True, False),
        (8, True, True)]
