"""GET /metrics: Prometheus exposition of the broker's figures."""
from __future__ import annotations

from flask import Blueprint, Response

from actors.messages import GetStats
from web.system import ask, current_system

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
    stats = ask(current_system().broker, GetStats())
    return Response(_render(stats), mimetype=CONTENT_TYPE_LATEST.split(";")[0])


def _render(stats: dict) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class _Snapshot:
        def collect(self):
            yield GaugeMetricFamily("sse_clients", "Connected SSE clients", value=stats["clients"])
            consumed = CounterMetricFamily("sse_events_consumed", "Events read from Kafka",
                                           labels=["topic"])
            for topic, count in sorted(stats["per_topic"].items()):
                consumed.add_metric([topic], count)
            yield consumed
            for key, help_text in (("events_delivered", "Events queued to clients"),
                                   ("events_dropped", "Events dropped for slow clients"),
                                   ("invalid_events", "Kafka records skipped as invalid")):
                yield CounterMetricFamily(f"sse_{key}", help_text, value=stats[key])

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot())
    return generate_latest(registry)
