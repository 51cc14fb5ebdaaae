"""What real producers put into Kafka: codecs, undecodable batches, transactions, tombstones."""
import json
import time

import pytest

from tests.harness import http_json
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e


def _event(n, type_="blog.post.created"):
    return json.dumps({"id": f"e{n}", "type": type_, "source": "blog-service",
                       "timestamp": "2025-01-06T12:00:00Z", "data": {"n": n}}).encode()


def _ns(events):
    return [json.loads(e["data"])["data"]["n"] for e in events]


def _producer(kafka, **config):
    from kafka import KafkaProducer
    return KafkaProducer(bootstrap_servers=[kafka.bootstrap], **config)


@pytest.fixture
def without_zstd(tmp_path):
    """A PYTHONPATH on which `import zstandard` fails: a gateway that lacks one codec."""
    fake = tmp_path / "nozstd" / "zstandard"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    return str(fake.parent)


def test_a_batch_in_a_codec_the_gateway_lacks_stalls_only_its_partition(
        kafka, topics, service, without_zstd):
    topic = topics("codec")["codec"]
    svc = service([topic], expect_partitions=3, PYTHONPATH=without_zstd)
    client = SSEClient(f"{svc.url}/events?history=false")
    zstd = _producer(kafka, compression_type="zstd", linger_ms=50)
    for n in range(5):
        zstd.send(topic, _event(n), partition=0)
    zstd.flush(timeout=10)
    plain = _producer(kafka)
    for n in range(100, 110):
        plain.send(topic, _event(n), partition=1 + n % 2)
    plain.flush(timeout=10)
    got = client.read_until(lambda evs: len(evs) >= 10, timeout=20)
    assert sorted(_ns(got)) == list(range(100, 110))     # the other partitions go on
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, health = http_json(svc.url + "/health", timeout=3)   # the worker still answers
        if "stopped at offset" in health["kafka"]["detail"]:
            break
        time.sleep(0.3)
    assert f"{topic}:0 stopped at offset 0" in health["kafka"]["detail"]
    assert "codec" in health["kafka"]["detail"]
    assert "not reading" in svc.log_tail(200) and f"{topic}:0" in svc.log_tail(200)
    for n in range(110, 113):
        plain.send(topic, _event(n), partition=1)
    plain.flush(timeout=10)
    got = client.read_until(lambda evs: len(evs) >= 13, timeout=20)
    assert sorted(_ns(got)) == list(range(100, 113))
    client.close()
    zstd.close()
    plain.close()


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_batches_of_kafkas_own_java_producer_arrive_intact(codec, kafka, topics, service):
    from tests.kafkatools import java_produce, record_batches
    topic = topics(f"java.{codec}", partitions=1)[f"java.{codec}"]
    svc = service([topic], expect_partitions=1)
    client = SSEClient(f"{svc.url}/events?history=false")
    java_produce(kafka.bootstrap, topic, [_event(n).decode() for n in range(40)], compression=codec)
    batches = record_batches(kafka.log_dir, topic, 0)
    assert [(b.codec, b.records) for b in batches] == [(codec, 40)]     # one compressed batch
    got = client.read_until(lambda evs: len(evs) >= 40, timeout=30)
    assert _ns(got) == list(range(40))
    client.close()


def test_every_codec_of_an_ordinary_producer_arrives_intact(kafka, topics, service):
    topic = topics("codecs")["codecs"]
    svc = service([topic], expect_partitions=3)
    client = SSEClient(f"{svc.url}/events?history=false")
    sent = []
    for i, codec in enumerate(("gzip", "snappy", "lz4", "zstd")):
        producer = _producer(kafka, compression_type=codec, linger_ms=100, batch_size=1 << 20)
        for n in range(i * 50, i * 50 + 50):
            producer.send(topic, _event(n), partition=i % 3)
            sent.append(n)
        producer.flush(timeout=10)
        producer.close()
    got = client.read_until(lambda evs: len(evs) >= len(sent), timeout=30)
    assert sorted(_ns(got)) == sent
    client.close()


def test_aborted_transactions_never_reach_a_client_and_markers_cost_no_wait(
        kafka, topics, service):
    topic = topics("tx", partitions=1)["tx"]
    svc = service([topic], expect_partitions=1)
    first = SSEClient(f"{svc.url}/events?history=false")
    tx = _producer(kafka, transactional_id=f"tx-{topic}")
    tx.init_transactions()
    tx.begin_transaction()
    for n in range(10):
        tx.send(topic, _event(n))
    tx.commit_transaction()
    committed = first.read_until(lambda evs: len(evs) >= 10, timeout=20)
    assert _ns(committed) == list(range(10))
    last_id = committed[-1]["id"]
    first.close()

    tx.begin_transaction()
    for n in range(10, 20):
        tx.send(topic, _event(n))
    tx.flush(timeout=10)                                  # in the log, then aborted
    tx.abort_transaction()
    tx.begin_transaction()
    for n in range(20, 25):
        tx.send(topic, _event(n))
    tx.commit_transaction()
    tx.close()

    resumed = SSEClient(f"{svc.url}/events", headers={"Last-Event-ID": last_id})
    rest = resumed.read_until(lambda evs: len(evs) >= 5, timeout=20)
    assert _ns(rest) == list(range(20, 25))
    assert not resumed.read_for(1.0)[5:]                 # and nothing from the aborted batch
    resumed.close()
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:                    # lag is reported every 5 s
        lag = svc.stats()["kafka_lag"]
        if lag and all(v == 0 for v in lag.values()):
            break
        time.sleep(0.5)
    assert lag == {f"{topic}:0": 0}, "a trailing transaction marker must not show as lag"

    svc.stop()
    again = service([topic], expect_partitions=1)
    started = time.monotonic()
    history = SSEClient(f"{again.url}/events")
    events = history.read_until(lambda evs: len(evs) >= 15, timeout=20)
    waited = time.monotonic() - started
    assert _ns(events) == list(range(10)) + list(range(20, 25))
    assert waited < 5, f"the warm start waited {waited:.1f} s for a transaction marker"
    history.close()


def test_interleaved_java_transactions_deliver_only_committed_events_and_a_full_history(
        kafka, topics, service):
    from actors.resume import Frontier
    from tests.kafkatools import java_run
    topic = topics("javatx", partitions=1)["javatx"]
    svc = service([topic], expect_partitions=1)
    live = SSEClient(f"{svc.url}/events?history=false")
    java_run("InterleavedTransactions.java", kafka.bootstrap, topic)
    committed = list(range(160))               # among 310 aborted records and 5 markers
    live.read_until(lambda evs: len(evs) >= 160, timeout=30)
    assert _ns(live.read_for(1.0)) == committed
    live.close()
    start = Frontier([topic], {(topic, 0): 0}).token()
    resumed = SSEClient(f"{svc.url}/events", headers={"Last-Event-ID": start})
    resumed.read_until(lambda evs: len(evs) >= 160, timeout=30)
    assert _ns(resumed.read_for(1.0)) == committed
    resumed.close()
    svc.stop()
    again = service([topic], expect_partitions=1)          # SSE_HISTORY_SIZE=100
    history = SSEClient(f"{again.url}/events")
    history.read_until(lambda evs: len(evs) >= 100, timeout=30)
    assert _ns(history.read_for(1.0)) == committed[-100:]
    history.close()


def test_tombstones_are_skipped_and_counted_on_their_own(kafka, topics, service):
    topic = topics("compacted", partitions=1)["compacted"]
    svc = service([topic], expect_partitions=1)
    client = SSEClient(f"{svc.url}/events?history=false")
    producer = _producer(kafka)
    for value in (_event(1), None, _event(2)):
        producer.send(topic, value, key=b"post-1")
    producer.flush(timeout=10)
    producer.close()
    got = client.read_until(lambda evs: len(evs) >= 2, timeout=15)
    assert _ns(got) == [1, 2]
    stats = svc.stats()
    assert stats["tombstones"] == 1 and stats["tombstones_per_topic"] == {topic: 1}
    assert stats["invalid_events"] == 0
    assert "tombstone" not in svc.log_tail(200)
    client.close()


def test_a_corrupt_batch_met_by_the_warm_start_stalls_only_its_partition(
        kafka, topics, service):
    from tests.kafkatools import record_batches
    topic = topics("corrupt")["corrupt"]
    producer = _producer(kafka, linger_ms=50)
    for n in range(5):
        producer.send(topic, _event(n), partition=0)
    producer.flush(timeout=10)
    for n in range(5, 8):
        producer.send(topic, _event(n), partition=1)
    producer.flush(timeout=10)
    [batch] = record_batches(kafka.log_dir, topic, 0)
    segment = next((kafka.log_dir / f"{topic}-0").glob("*.log"))
    data = bytearray(segment.read_bytes())
    data[len(data) - 3] ^= 0xFF                  # a byte inside the last record: the CRC fails
    segment.write_bytes(bytes(data))

    svc = service([topic], expect_partitions=3)  # the warm start reads the corrupt batch
    history = SSEClient(f"{svc.url}/events")
    got = history.read_until(lambda evs: len(evs) >= 3, timeout=15)
    assert _ns(got) == [5, 6, 7]
    status, health = http_json(svc.url + "/health")
    assert status == 200 and f"{topic}:0 stopped at offset 0: corrupt batch" in health["kafka"]["detail"]
    producer.send(topic, _event(8), partition=2)
    producer.flush(timeout=10)
    assert _ns(history.read_until(lambda evs: len(evs) >= 4, timeout=15)) == [5, 6, 7, 8]
    history.close()
    producer.close()
    assert batch.records == 5

    from actors.resume import Frontier           # a client that had seen nothing of it yet
    before = Frontier([topic], {(topic, 0): 0, (topic, 1): 0, (topic, 2): 0}).token()
    resumed = SSEClient(f"{svc.url}/events", headers={"Last-Event-ID": before})
    events = resumed.read_until(lambda evs: len(evs) >= 5, timeout=20)
    gaps = [json.loads(e["data"]) for e in events if e["event"] == "gap"]
    assert [(p["partition"], p["reason"], p["requested_offset"]) for g in gaps
            for p in g["partitions"]] == [(0, "unreadable", 0)]
    assert sorted(_ns([e for e in events if e["event"] != "gap"])) == [5, 6, 7, 8]
    resumed.close()


def test_a_warm_start_that_reads_further_back_goes_live_without_reading_anything_twice(
        kafka, topics, service):
    topic = topics("readback", partitions=1)["readback"]
    producer = _producer(kafka, linger_ms=20)
    pad = "x" * 1000

    def event(n):
        return _event(n)[:-1] + f',"pad":"{pad}"}}'.encode()

    for n in range(600):
        producer.send(topic, event(n))
    for n in range(600, 750):            # the last 300 records: 150 events, 150 invalid
        producer.send(topic, event(n))
        producer.send(topic, b"not json " + pad.encode())
    producer.flush(timeout=10)
    # The read further back (300 records) takes more than one poll (200 records at most).
    svc = service([topic], expect_partitions=1, SSE_HISTORY_SIZE="300")
    live = SSEClient(f"{svc.url}/events?history=false")
    history = SSEClient(f"{svc.url}/events")
    producer.send(topic, _event(1000))
    producer.flush(timeout=10)
    history.read_until(lambda evs: 1000 in _ns(evs), timeout=20)
    assert _ns(history.read_for(1.0)) == list(range(450, 750)) + [1000]
    live.read_until(lambda evs: 1000 in _ns(evs), timeout=10)
    assert _ns(live.read_for(1.0)) == [1000]
    # the warm start's invalid records where the history covers (from offset 450), each once
    assert svc.stats()["invalid_events"] == 150
    assert (f"skipped invalid record at {topic}:0:601 (warm start): value is not JSON"
            in svc.log_path.read_text())
    history.close()
    live.close()
    producer.close()


def test_a_corrupt_batch_the_warm_start_reads_further_back_does_not_stop_the_live_stream(
        kafka, topics, service):
    topic = topics("corruptback", partitions=1)["corruptback"]
    producer = _producer(kafka, linger_ms=50)
    for n in range(5):
        producer.send(topic, _event(n))
    producer.flush(timeout=10)
    segment = next((kafka.log_dir / f"{topic}-0").glob("*.log"))
    data = bytearray(segment.read_bytes())
    data[len(data) - 3] ^= 0xFF                  # a byte inside the last record: the CRC fails
    segment.write_bytes(bytes(data))
    for n in range(100):                         # the last 100 records: no events
        producer.send(topic, b"not json")
    producer.flush(timeout=10)

    svc = service([topic], expect_partitions=1)  # SSE_HISTORY_SIZE=100: reads back to 0
    live = SSEClient(f"{svc.url}/events?history=false")
    producer.send(topic, _event(1000))
    producer.flush(timeout=10)
    assert _ns(live.read_until(lambda evs: len(evs) >= 1, timeout=15)) == [1000]
    live.close()
    producer.close()
