"""web/metrics.py's rendering of the /stats figures, without a service."""
from prometheus_client.parser import text_string_to_metric_families

from actors.limiter import OVERLOADED
from actors.replies import REFUSALS, LimiterStats, ServiceStats, Stats
from actors.shared_limits import StreamCaps, cap_refusal
from web.metrics import render

TOPICS = ("blog.posts", "link.clicks")
BY_TOPIC = ("sse_events_consumed", "sse_events_delivered", "sse_events_dropped",
            "sse_events_invalid", "sse_kafka_tombstones")


def series(text: bytes) -> dict[tuple, float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text.decode())
            for sample in family.samples}


def test_counters_by_topic_and_reason_start_at_zero_not_at_their_first_count():
    """Prometheus' increase() starts at a series' first sample: one born at 1 hides the
    first invalid record, drop or refusal from an alert on it."""
    fresh = ServiceStats(Stats(), 0, LimiterStats(True), 1)
    found = series(render(fresh, TOPICS))
    for name in BY_TOPIC:
        for topic in TOPICS:
            assert found[(f"{name}_total", (("topic", topic),))] == 0, (name, topic)
    for reason in REFUSALS:
        assert found[("sse_requests_refused_total", (("reason", reason),))] == 0, reason


def test_counts_already_made_are_shown_beside_the_zeros():
    figures = ServiceStats(Stats(per_topic={"blog.posts": 4, "gone.topic": 2},
                                 invalid_per_topic={"link.clicks": 1}),
                           0, LimiterStats(True, refused={"rate_limited": 3}), 1)
    found = series(render(figures, TOPICS))
    consumed = {dict(labels)["topic"]: value for (name, labels), value in found.items()
                if name == "sse_events_consumed_total"}
    assert consumed == {"blog.posts": 4, "gone.topic": 2, "link.clicks": 0}
    assert found[("sse_events_invalid_total", (("topic", "link.clicks"),))] == 1
    assert found[("sse_events_invalid_total", (("topic", "blog.posts"),))] == 0
    assert found[("sse_requests_refused_total", (("reason", "rate_limited"),))] == 3


def test_every_reason_the_limiter_refuses_for_is_listed():
    caps = StreamCaps(total=1, per_ip=1, per_subject=1)
    reasons = {cap_refusal(caps, 0, 1, 0, None), cap_refusal(caps, 0, 0, 1, "alice"),
               cap_refusal(caps, 1, 0, 0, None), "rate_limited", OVERLOADED}
    assert reasons <= set(REFUSALS)
