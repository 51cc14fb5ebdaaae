"""GET /metrics: Prometheus exposition of the actors' figures, plus the delivery-latency histogram.

The counters live in the broker (and the limiter); a scrape asks them once and renders a
snapshot. Only the latency histogram is observed here, by the stream writers, once per write:
the time from the Kafka timestamp of the oldest live event in the write to the write itself,
for one write in eight of each stream (web/stream.py samples; every write would cost ~9 % CPU).
"""
from __future__ import annotations

import time

from flask import Blueprint, Response
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from actors.messages import GetLimiterStats, GetStats
from web.system import ask, current_system

bp = Blueprint("metrics", __name__)

_LIVE = CollectorRegistry(auto_describe=True)
DELIVERY_LATENCY = Histogram(
    "sse_delivery_latency_seconds",
    "Kafka record timestamp of the oldest live event in a write -> the write to the socket",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=_LIVE,
)


def observe_write(oldest_ms: int) -> None:
    if oldest_ms:
        DELIVERY_LATENCY.observe(max(0.0, time.time() - oldest_ms / 1000))


@bp.get("/metrics")
def metrics():
    system = current_system()
    stats = ask(system.broker, GetStats())
    limits = _limiter_stats(system)
    body = _render(stats, limits) + generate_latest(_LIVE)
    return Response(body, mimetype="text/plain", headers={"Cache-Control": "no-store"})


def _limiter_stats(system) -> dict:
    return ask(system.limiter, GetLimiterStats())


def _counter(name, help_text, label, values: dict):
    family = CounterMetricFamily(name, help_text, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def _render(stats: dict, limits: dict) -> bytes:
    class Snapshot:
        def collect(self):
            yield GaugeMetricFamily("sse_clients", "Connected SSE clients", value=stats["clients"])
            yield _counter("sse_events_consumed", "Events read from Kafka", "topic",
                           stats["per_topic"])
            yield _counter("sse_events_delivered", "Events queued to clients", "topic",
                           stats["delivered_per_topic"])
            yield _counter("sse_events_dropped", "Events not queued: the client was too slow",
                           "topic", stats["dropped_per_topic"])
            yield _counter("sse_events_invalid", "Kafka records skipped as invalid", "topic",
                           stats["invalid_per_topic"])
            lag = GaugeMetricFamily("sse_kafka_consumer_lag", "Records behind the partition end",
                                    labels=["partition"])
            for partition, value in stats["kafka_lag"].items():
                lag.add_metric([partition], value)
            yield lag
            yield GaugeMetricFamily("sse_kafka_connected", "1 when Kafka is connected",
                                    value=1 if stats["kafka_state"] == "connected" else 0)
            yield CounterMetricFamily("sse_slow_disconnects", "Clients dropped as too slow",
                                      value=stats["slow_disconnects"])
            yield CounterMetricFamily("sse_kafka_replays", "Resumes served by reading Kafka",
                                      value=stats["kafka_replays"])
            refused = CounterMetricFamily("sse_requests_refused",
                                          "Requests refused by the protections", labels=["reason"])
            for reason, value in sorted(limits.get("refused", {}).items()):
                refused.add_metric([reason], value)
            yield refused

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot())
    return generate_latest(registry)
