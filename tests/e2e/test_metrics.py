"""GET /metrics, scraped from the real service: parsed with prometheus-client's own parser,
checked with `promtool check metrics` (scripts/install-promtool), compared with /stats."""
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import children, http_json
from tests.sse import SSEClient
from web.metrics import STATS_METRICS

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]


def _fetch(url):
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        return response.headers["Content-Type"], response.read().decode()


def _samples(text):
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _scrape(url):
    return _samples(_fetch(url)[1])


def _promtool():
    found = ROOT / ".cache" / "bin" / "promtool"
    if found.exists():
        return str(found)
    if shutil.which("promtool"):
        return shutil.which("promtool")
    if os.environ.get("CI") == "true":
        pytest.fail("promtool is missing: scripts/install-promtool should have unpacked it")
    return None


def _leaves(figures, prefix=""):
    """The /stats figures as dotted names; a dict of counts by topic, reason... is one figure."""
    for key, value in figures.items():
        name = prefix + key
        if isinstance(value, dict) and key == "limiter":
            yield from _leaves(value, name + ".")
        else:
            yield name


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
    invalid = ("sse_events_invalid_total", (("topic", topic),))
    deadline = time.monotonic() + 10      # the bad record may come in a fetch after the fifth
    while (samples := _scrape(svc.url)).get(invalid) != 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert samples[("sse_clients", ())] == 1
    assert samples[("sse_events_consumed_total", (("topic", topic),))] == 5
    assert samples[("sse_events_delivered_total", (("topic", topic),))] == 5
    assert samples[invalid] == 1
    assert samples[("sse_kafka_connected", ())] == 1
    assert samples[("sse_kafka_state", (("state", "connected"),))] == 1
    assert samples[("sse_kafka_state", (("state", "unreachable"),))] == 0
    assert samples[("sse_connections_total", ())] >= 1
    assert samples[("sse_delivery_latency_seconds_count", ())] >= 1
    deadline = time.monotonic() + 20      # the consumer reports lag every 5 s
    while True:
        lags = {dict(labels)["partition"]: v for (name, labels), v in samples.items()
                if name == "sse_kafka_consumer_lag" and dict(labels).get("topic") == topic}
        if len(lags) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
        samples = _scrape(svc.url)
    assert sorted(lags) == ["0", "1", "2"]
    assert all(v >= 0 for v in lags.values())
    client.close()


def test_metrics_an_operator_expects(topics, service):
    topic = topics("metrics-std")["metrics-std"]
    svc = service([topic], expect_partitions=3)
    content_type, text = _fetch(svc.url)
    assert content_type.startswith("text/plain; version=0.0.4")
    samples = _samples(text)
    names = {name for name, _labels in samples}
    for wanted in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                   "process_open_fds", "process_start_time_seconds",
                   "python_gc_collections_total", "python_info"):
        assert wanted in names, f"{wanted} missing from /metrics"
    build = [dict(labels) for name, labels in samples if name == "sse_build_info"]
    assert len(build) == 1 and set(build[0]) == {"version", "python", "kafka_python"}
    assert build[0]["kafka_python"].startswith("3.")
    started = samples[("sse_start_time_seconds", ())]
    [(labels, worker_started)] = [(dict(labels), value) for (name, labels), value
                                  in samples.items() if name == "process_start_time_seconds"]
    with open(f"/proc/{svc.process.pid}/task/{svc.process.pid}/children") as children:
        assert labels == {"pid": children.read().strip()}     # the one worker's
    assert abs(started - worker_started) < 120


def test_every_stats_figure_is_in_metrics(topics, service):
    topic = topics("metrics-all")["metrics-all"]
    svc = service([topic], expect_partitions=3)
    _status, figures = http_json(svc.url + "/stats")
    leaves = set(_leaves(figures))
    unnamed = leaves - set(STATS_METRICS)
    assert not unnamed, f"/stats figures without a metric in web.metrics.STATS_METRICS: {unnamed}"
    text = _fetch(svc.url)[1]
    families = {family.name for family in text_string_to_metric_families(text)}
    exposed = {family.name + ("_total" if family.type == "counter" else "")
               for family in text_string_to_metric_families(text)}
    missing = {STATS_METRICS[leaf] for leaf in leaves} - exposed
    assert not missing, f"metrics named in STATS_METRICS but not exposed: {missing}"
    for name in families:
        assert name.startswith(("sse_", "process_", "python_")), name
    assert _samples(text)[("sse_history_events", ())] == figures["history_size"]
    assert _samples(text)[("sse_filter_groups", ())] == figures["filter_groups"]


def test_promtool_accepts_the_exposition(topics, service):
    promtool = _promtool()
    if promtool is None:
        pytest.skip("promtool is not installed (scripts/install-promtool unpacks Debian's "
                    "prometheus package); the prometheus-client parse above still ran")
    topic = topics("metrics-lint")["metrics-lint"]
    svc = service([topic], expect_partitions=3)
    client = SSEClient(f"{svc.url}/events?history=false")
    client.read_until(lambda evs: client.parser.comments, timeout=5)
    text = _fetch(svc.url)[1]
    client.close()
    result = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                            capture_output=True, timeout=30)
    assert result.returncode == 0, f"promtool check metrics:\n{result.stdout}{result.stderr}"


def test_replaced_workers_leave_one_histogram_file_and_their_counts(topics, service, producer):
    """Each worker writes the latency histogram to a file of its own in the instance
    directory; a killed worker's counts must stay (the histogram never falls) without its
    file staying for good: one file for the ended workers, one per live worker."""
    topic = topics("metrics-files")["metrics-files"]
    svc = service([topic], expect_partitions=3)
    [metrics_dir] = Path("/dev/shm" if os.access("/dev/shm", os.W_OK) else "/tmp").glob(
        f"kafka-sse-{svc.process.pid}-*/metrics")
    counted = 0.0
    for round_ in range(4):
        [worker] = children(svc.process.pid)
        client = SSEClient(f"{svc.url}/events?history=false")
        client.read_until(lambda evs, client=client: client.parser.comments, timeout=10)
        producer(topic, {"id": f"r{round_}", "type": "t.x", "data": round_}, partition=0)
        producer.flush()
        client.read_count(1)          # a stream's first live write is always timed
        client.close()
        now = _scrape(svc.url)[("sse_delivery_latency_seconds_count", ())]
        assert now > counted, f"round {round_}: the histogram's count went {counted} -> {now}"
        counted = now
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while children(svc.process.pid) in ({worker}, set()) and time.monotonic() < deadline:
            time.sleep(0.1)
        svc.wait_healthy(3)
    [worker] = children(svc.process.pid)
    assert _scrape(svc.url)[("sse_delivery_latency_seconds_count", ())] >= counted
    files = sorted(path.name for path in metrics_dir.glob("*.db"))
    assert files == [f"{kind}_{which}.db" for kind in ("counter", "histogram")    # the door's
                     for which in sorted([str(worker), "retired"])], files
