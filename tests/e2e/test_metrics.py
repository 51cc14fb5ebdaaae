"""GET /metrics, scraped from the real service and parsed with prometheus-client's own parser."""
import json
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.sse import SSEClient

pytestmark = pytest.mark.e2e


def _scrape(url):
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_count_what_happened(topics, service, producer):
    topic = topics("metrics")["metrics"]
    svc = service([topic], expect_partitions=3)
    client = SSEClient(f"{svc.url}/events?history=false")
    client.read_until(lambda evs: client.parser.comments, timeout=5)
    for n in range(5):
        producer(topic, {"id": f"e{n}", "type": "link.clicked", "data": n}, partition=n % 3)
    producer(topic, b"not json", partition=0)
    producer.flush()
    client.read_count(5)
    samples = _scrape(svc.url)
    assert samples[("sse_clients", ())] == 1
    assert samples[("sse_events_consumed_total", (("topic", topic),))] == 5
    assert samples[("sse_events_delivered_total", (("topic", topic),))] == 5
    assert samples[("sse_events_invalid_total", (("topic", topic),))] == 1
    assert samples[("sse_kafka_connected", ())] == 1
    assert samples[("sse_delivery_latency_seconds_count", ())] >= 1
    lags = [v for (name, labels), v in samples.items() if name == "sse_kafka_consumer_lag"]
    assert all(v >= 0 for v in lags)
    client.close()
