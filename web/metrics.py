"""GET /metrics: Prometheus exposition of every /stats figure, the latency histogram, build
info and the standard process and Python collectors.

The counters live in the broker, the history and the limiter; a scrape asks them once and
renders a snapshot (STATS_METRICS names the metric each /stats figure becomes). Only the
latency histogram is observed here, by the stream writers: the time from the Kafka timestamp
of the oldest live event in a write to the write itself, for the first of every
LATENCY_SAMPLE (32) writes of each stream (actors/outbox.py).

Under gunicorn with several workers the figures describe the instance: the /stats ones come
from the gateway attached to the app (it asks every worker), and the histogram is kept in
prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by the master: a worker's
own files, summed at each scrape, an ended worker's folded into one: web/metrics_files.py);
the counters keep a dead or replaced worker's counts too (actors/tally.py). The process_*
figures are every live worker's, one series each (label `pid`, read from /proc; the workers
are the peer sockets in the instance directory: rpc/peers.py), and python_gc_* those of the worker
that answers, with its `pid`: unlabelled, a scrape answered by another worker than the last
one would show another process's counts, and a counter that falls reads as a reset (a spike
in rate()).
"""
from __future__ import annotations

import glob
import os
import platform
import time
from importlib import metadata

from flask import Blueprint, Response, current_app
from prometheus_client import (
    GC_COLLECTOR, PLATFORM_COLLECTOR, CollectorRegistry, Counter, Histogram, ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from actors.replies import REFUSALS, ServiceStats
from actors.settings import INSTANCE_DIR
from web.core import current_gateway
from web.metrics_files import LockedCollector, reserve_own
from web.instance_dir import PEERS

bp = Blueprint("metrics", __name__)

# Set by gunicorn's master (web/serve.py) before the workers start, so before this import.
MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


class WorkerProcesses:
    """process_* of every live worker of the instance, labelled with its pid (this worker's
    alone outside gunicorn): the workers are this one and those with a peer socket in
    the instance directory (rpc/peers.py; a worker's socket goes when it stops or gunicorn
    sees it die)."""

    def __init__(self, instance_dir: str = ""):
        self.instance_dir = instance_dir
        self.readers: dict[int, ProcessCollector] = {}

    def pids(self) -> list[int]:
        pids = {os.getpid()}
        try:
            names = os.listdir(os.path.join(self.instance_dir, PEERS)) if self.instance_dir else []
        except OSError:
            names = []
        pids.update(int(name.partition(".")[0]) for name in names
                    if name.endswith(".sock") and name.partition(".")[0].isdigit())
        return sorted(pids)

    def collect(self):
        pids = self.pids()
        for gone in set(self.readers) - set(pids):
            del self.readers[gone]
        for pid in pids:
            if pid not in self.readers:
                self.readers[pid] = ProcessCollector(pid=lambda pid=pid: pid, registry=None)
        return _with_pid(((pid, self.readers[pid].collect()) for pid in pids))


class AnsweringWorker:
    """A collector's figures (python_gc_*) labelled with this worker's pid."""

    def __init__(self, collector):
        self.collector = collector

    def collect(self):
        return _with_pid([(os.getpid(), self.collector.collect())])


def _with_pid(per_pid) -> list[Metric]:
    """Each process's families merged into one family per name, every sample with its `pid`."""
    merged: dict[str, Metric] = {}
    for pid, families in per_pid:
        for family in families:
            into = merged.setdefault(family.name, Metric(family.name, family.documentation,
                                                         family.type, family.unit))
            for sample in family.samples:
                into.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value,
                                sample.timestamp, sample.exemplar)
    return list(merged.values())


# The app's own registry: the latency histogram (every worker's, in multiprocess mode) plus
# the standard collectors: process_* (every worker's), python_gc_* (this worker's) and
# python_info.
_LIVE = CollectorRegistry(auto_describe=True)
for _collector in (WorkerProcesses(os.environ.get(INSTANCE_DIR, "")), PLATFORM_COLLECTOR,
                   AnsweringWorker(GC_COLLECTOR)):
    _LIVE.register(_collector)


class WorkerFiles(MultiProcessCollector):
    """Every worker's histogram file, less those a worker has created but not yet sized.
    prometheus_client creates a worker's file empty and only then gives it its size and
    header (prometheus/client_python#1199), and reading one in that moment raised struct.error:
    a scrape answered 500, and so did each one after when the worker was killed in that
    moment; a worker starting beside another (WORKERS=2, a replacement) reads them all when
    it registers this collector, and one that met such a file failed to boot, upon which
    gunicorn's master shut the whole instance down. An empty file has recorded nothing: it is
    skipped."""

    def collect(self):
        files = [f for f in glob.glob(os.path.join(self._path, "*.db")) if _sized(f)]
        return self.merge(files, accumulate=True)


def _sized(path: str) -> bool:
    try:
        return os.stat(path).st_size > 0
    except FileNotFoundError:   # a dead worker's live gauge, removed meanwhile
        return False


class _Unrecorded:
    """A metric this worker does not record (no room for its files): calls do nothing."""

    def labels(self, *_values) -> "_Unrecorded":
        return self

    def observe(self, _value: float) -> None:
        pass

    def inc(self, _amount: float = 1) -> None:
        pass


def unrecorded() -> str | None:
    """Why this worker records no metrics of its own, for its start-up log (or None)."""
    if _NO_ROOM is None:
        return None
    return (f"no room for this worker's metric files in {MULTIPROCESS_DIR} "
            f"({_NO_ROOM.strerror}): its delivery latency and unfinished requests are not "
            f"recorded (the other figures are); free room there (df -h {MULTIPROCESS_DIR}), "
            f"then restart the workers (kill -HUP the master)")


_NO_ROOM = reserve_own(MULTIPROCESS_DIR, os.getpid()) if MULTIPROCESS_DIR else None
if MULTIPROCESS_DIR:
    _LIVE.register(LockedCollector(MULTIPROCESS_DIR,         # ended workers' files folded
                                   WorkerFiles(None, path=MULTIPROCESS_DIR)))
DELIVERY_LATENCY: Histogram | _Unrecorded = _Unrecorded() if _NO_ROOM else Histogram(
    "sse_delivery_latency_seconds",
    "Kafka record timestamp of the oldest live event in a write -> the write to the socket",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=None if MULTIPROCESS_DIR else _LIVE,   # multiprocess: the collector reads its files
)
# Counted by the worker's door (web/worker.py), kept like the histogram: connections closed
# before their request head was complete, by how (request_timeout: 408 after
# HTTP_HEADER_TIMEOUT_SECONDS; too_many_pending_requests: 429 over HTTP_MAX_PENDING_PER_IP;
# pending_evicted: closed unanswered, the oldest, over HTTP_MAX_PENDING).
UNFINISHED_REASONS = ("request_timeout", "too_many_pending_requests", "pending_evicted")
UNFINISHED_CLOSED: Counter | _Unrecorded = _Unrecorded() if _NO_ROOM else Counter(
    "sse_unfinished_requests_closed",
    "Connections closed before their request head was complete, by reason",
    ["reason"], registry=None if MULTIPROCESS_DIR else _LIVE,
)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"    # what generate_latest writes
KAFKA_STATES = ("connecting", "connected", "unreachable", "unauthorized")

# /stats figure (dotted for nested ones) -> the metric that carries it. A figure added to
# /stats without a line here fails tests/e2e/test_metrics.py.
STATS_METRICS = {
    "clients": "sse_clients",
    "events_consumed": "sse_events_consumed_total",
    "per_topic": "sse_events_consumed_total",
    "events_delivered": "sse_events_delivered_total",
    "delivered_per_topic": "sse_events_delivered_total",
    "events_dropped": "sse_events_dropped_total",
    "dropped_per_topic": "sse_events_dropped_total",
    "invalid_events": "sse_events_invalid_total",
    "invalid_per_topic": "sse_events_invalid_total",
    "tombstones": "sse_kafka_tombstones_total",
    "tombstones_per_topic": "sse_kafka_tombstones_total",
    "unowned_events": "sse_events_unowned_total",
    "events_replayed": "sse_events_replayed_total",
    "kafka_replays": "sse_kafka_replays_total",
    "slow_disconnects": "sse_slow_disconnects_total",
    "connections_total": "sse_connections_total",
    "filter_groups": "sse_filter_groups",
    "kafka_lag": "sse_kafka_consumer_lag",
    "kafka_state": "sse_kafka_state",
    "uptime_seconds": "sse_start_time_seconds",
    "started_at": "sse_start_time_seconds",
    "history_size": "sse_history_events",
    "actors": "sse_actors",
    "limiter.enabled": "sse_rate_limit_enabled",
    "limiter.streams": "sse_streams_admitted",
    "limiter.addresses_streaming": "sse_stream_addresses",
    "limiter.subjects_streaming": "sse_stream_subjects",
    "limiter.buckets": "sse_rate_limit_buckets",
    "limiter.buckets_evicted": "sse_rate_limit_buckets_evicted_total",
    "limiter.refused": "sse_requests_refused_total",
}


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


BUILD_INFO = {
    "version": _version("kafka-sse-gateway"),
    "python": platform.python_version(),
    "kafka_python": _version("kafka-python"),
}


def observe_write(oldest_ms: int) -> None:
    if oldest_ms:
        DELIVERY_LATENCY.observe(max(0.0, time.time() - oldest_ms / 1000))


@bp.get("/metrics")
def metrics():
    topics = current_app.config["SETTINGS"].kafka_topics
    body = render(current_gateway().stats(), topics) + generate_latest(_LIVE)
    return Response(body, headers={"Content-Type": CONTENT_TYPE,
                                   "Cache-Control": "no-store"})


def split_partition(key: str) -> tuple[str, str]:
    """"blog.posts:0" -> ("blog.posts", "0"); Kafka topic names cannot hold a colon."""
    topic, _, partition = key.rpartition(":")
    return topic, partition


def _counter(name, help_text, values: dict, keys=(), label="topic"):
    """One series per key of `values`, and one of 0 for each of `keys` not among them: a
    series that appears at its first count is an increase Prometheus does not see (rate()
    and increase() start from its first sample), so an alert on it misses the first burst."""
    family = CounterMetricFamily(name, help_text, labels=[label])
    for key, value in sorted({**dict.fromkeys(keys, 0), **values}.items()):
        family.add_metric([key], value)
    return family


def _gauge(name, help_text, value):
    return GaugeMetricFamily(name, help_text, value=value)


def _families(figures: ServiceStats, now: float, topics=()):
    stats, limits = figures.broker, figures.limiter
    yield InfoMetricFamily("sse_build", "The gateway's version, Python and kafka-python",
                           value=BUILD_INFO)
    yield _gauge("sse_clients", "Connected SSE clients", stats.clients)
    yield _counter("sse_events_consumed", "Events read from Kafka", stats.per_topic, topics)
    yield _counter("sse_events_delivered", "Events queued to clients",
                   stats.delivered_per_topic, topics)
    yield _counter("sse_events_dropped", "Events not queued: the client was too slow",
                   stats.dropped_per_topic, topics)
    yield _counter("sse_events_invalid", "Kafka records skipped as invalid",
                   stats.invalid_per_topic, topics)
    yield _counter("sse_kafka_tombstones", "Kafka records without a value, skipped",
                   stats.tombstones_per_topic, topics)
    yield CounterMetricFamily("sse_events_unowned", "Events whose owner (AUTH_SUBJECT_FIELD) "
                              "names no subject: sent to no stream", value=stats.unowned_events)
    yield CounterMetricFamily("sse_events_replayed", "Events sent to resuming clients",
                              value=stats.events_replayed)
    yield CounterMetricFamily("sse_kafka_replays", "Resumes served by reading Kafka",
                              value=stats.kafka_replays)
    yield CounterMetricFamily("sse_slow_disconnects", "Clients dropped as too slow",
                              value=stats.slow_disconnects)
    yield CounterMetricFamily("sse_connections", "Streams opened since the start",
                              value=stats.connections_total)
    yield _gauge("sse_filter_groups", "(filter, naming) groups of connected clients, summed "
                 "over the workers (each matches its own)", stats.filter_groups)
    lag = GaugeMetricFamily("sse_kafka_consumer_lag", "Records behind the partition end",
                            labels=["topic", "partition"])
    for key, value in sorted(stats.kafka_lag.items()):
        lag.add_metric(list(split_partition(key)), value)
    yield lag
    yield _gauge("sse_kafka_connected", "1 when Kafka is connected",
                 1 if stats.kafka_state == "connected" else 0)
    state = GaugeMetricFamily("sse_kafka_state", "1 for the Kafka connection's current state",
                              labels=["state"])
    for name in sorted(set(KAFKA_STATES) | {stats.kafka_state}):
        state.add_metric([name], 1 if name == stats.kafka_state else 0)
    yield state
    yield _gauge("sse_start_time_seconds", "Start of the instance (its first worker), Unix time",
                 stats.started_at or round(now - stats.uptime_seconds, 3))
    yield _gauge("sse_history_events", "Recent events kept for replay", figures.history_size)
    yield _gauge("sse_actors", "Running actors", figures.actors)
    yield _gauge("sse_rate_limit_enabled", "1 when per-address rate limiting is on",
                 1 if limits.enabled else 0)
    yield _gauge("sse_streams_admitted", "Stream slots held", limits.streams)
    yield _gauge("sse_stream_addresses", "Client addresses holding a stream",
                 limits.addresses_streaming)
    yield _gauge("sse_stream_subjects", "Subjects holding a stream (counted only while "
                 "SSE_MAX_CLIENTS_PER_SUBJECT is set)", limits.subjects_streaming)
    yield _gauge("sse_rate_limit_buckets", "Addresses with a rate-limit bucket", limits.buckets)
    yield CounterMetricFamily("sse_rate_limit_buckets_evicted",
                              "Rate-limit buckets dropped to bound memory",
                              value=limits.buckets_evicted)
    yield _counter("sse_requests_refused", "Requests refused by the protections",
                   limits.refused, REFUSALS, label="reason")


def render(figures: ServiceStats, topics=()) -> bytes:
    """The /stats figures (broker, history_size, limiter, actors) in the exposition format;
    the counters by topic have a series for each of `topics` (KAFKA_TOPICS) from the start."""
    class Snapshot:
        def collect(self):
            return _families(figures, time.time(), topics)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot())
    return generate_latest(registry)
