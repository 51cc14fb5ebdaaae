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


# -- from a mutation audit: each /stats figure in its own metric --------------------------------

def _figures(**changes) -> ServiceStats:
    """Every figure a distinct number, so that one shown in another's metric is seen."""
    broker = Stats(clients=2, events_replayed=4, kafka_replays=1, slow_disconnects=6,
                   connections_total=5, filter_groups=3, unowned_events=8, invalid_events=9,
                   per_topic={"blog.posts": 7}, delivered_per_topic={"blog.posts": 14},
                   dropped_per_topic={"blog.posts": 11}, invalid_per_topic={"link.clicks": 1},
                   tombstones_per_topic={"blog.posts": 2}, kafka_lag={"blog.posts:3": 12},
                   kafka_state="connected", uptime_seconds=1000.0)
    limiter = LimiterStats(False, streams=21, addresses_streaming=13, buckets=17,
                           buckets_evicted=19, subjects_streaming=31)
    return ServiceStats(Stats(**{**{f: getattr(broker, f) for f in Stats.__dataclass_fields__},
                                 **changes}), 23, limiter, 29)


def test_every_stats_figure_is_shown_in_its_own_metric():
    """A figure in another's metric is a wrong number on a dashboard, with nothing to say so."""
    found = series(render(_figures(), TOPICS))
    assert {name: found[(name, ())] for name in (
        "sse_clients", "sse_events_unowned_total", "sse_events_replayed_total",
        "sse_kafka_replays_total", "sse_slow_disconnects_total", "sse_connections_total",
        "sse_filter_groups", "sse_history_events", "sse_actors", "sse_rate_limit_enabled",
        "sse_streams_admitted", "sse_stream_addresses", "sse_rate_limit_buckets",
        "sse_rate_limit_buckets_evicted_total", "sse_stream_subjects")} == {
        "sse_clients": 2, "sse_events_unowned_total": 8, "sse_events_replayed_total": 4,
        "sse_kafka_replays_total": 1, "sse_slow_disconnects_total": 6,
        "sse_connections_total": 5, "sse_filter_groups": 3, "sse_history_events": 23,
        "sse_actors": 29, "sse_rate_limit_enabled": 0, "sse_streams_admitted": 21,
        "sse_stream_addresses": 13, "sse_rate_limit_buckets": 17,
        "sse_rate_limit_buckets_evicted_total": 19, "sse_stream_subjects": 31}
    by_topic = {(name, dict(labels)["topic"]): value for (name, labels), value in found.items()
                if dict(labels).get("topic") == "blog.posts"}
    assert by_topic == {("sse_events_consumed_total", "blog.posts"): 7,
                        ("sse_events_delivered_total", "blog.posts"): 14,
                        ("sse_events_dropped_total", "blog.posts"): 11,
                        ("sse_events_invalid_total", "blog.posts"): 0,
                        ("sse_kafka_tombstones_total", "blog.posts"): 2,
                        ("sse_kafka_consumer_lag", "blog.posts"): 12}
    assert found[("sse_kafka_consumer_lag", (("partition", "3"), ("topic", "blog.posts")))] == 12
    assert found[("sse_kafka_tombstones_total", (("topic", "link.clicks"),))] == 0


def test_the_start_time_is_now_less_the_uptime_from_a_peer_that_does_not_say_it():
    import time
    before = time.time()
    start = series(render(_figures(uptime_seconds=1000.0)))[("sse_start_time_seconds", ())]
    assert before - 1000.0 - 0.01 <= start <= time.time() - 1000.0 + 0.01


def test_the_start_time_stays_put_between_scrapes_and_across_a_step_of_the_wall_clock(
        monkeypatch):
    """sse_start_time_seconds was each scrape's time less the uptime: it moved by a millisecond
    between scrapes (a `changes()` alert on restarts fired at every scrape) and by 10 minutes
    when the wall clock stepped back 10 minutes (a clock-step audit)."""
    import time

    from actors.figures import Figures
    monotonic, wall = [1000.0], [1.8e9]
    figures = Figures(clock=lambda: monotonic[0], wall=lambda: wall[0])
    monkeypatch.setattr(time, "time", lambda: wall[0])

    def scrape() -> float:
        broker = figures.stats(clients=0, filter_groups=0, kafka_state="connected")
        return series(render(ServiceStats(broker, 0, LimiterStats(False), 1)))[
            ("sse_start_time_seconds", ())]

    first = scrape()
    monotonic[0] += 60.0004
    wall[0] += 60.0011
    second = scrape()
    monotonic[0] += 5
    wall[0] -= 600
    assert first == second == scrape() == 1.8e9


def test_the_kafka_state_is_one_series_at_1_and_connected_only_when_connected():
    """An alert on sse_kafka_connected == 0 or on sse_kafka_state must see an unauthorized
    gateway, and a state this build does not list must still be shown."""
    found = series(render(_figures(kafka_state="unauthorized")))
    assert found[("sse_kafka_connected", ())] == 0
    states = {dict(labels)["state"]: value for (name, labels), value in found.items()
              if name == "sse_kafka_state"}
    assert states == {"connecting": 0, "connected": 0, "unreachable": 0, "unauthorized": 1}
    found = series(render(_figures(kafka_state="stopping")))
    assert found[("sse_kafka_state", (("state", "stopping"),))] == 1


def test_a_write_without_a_kafka_timestamp_is_not_a_latency_and_a_future_one_is_zero():
    """A write of nothing live (timestamp 0) counted as 55 years of latency; a producer's clock
    ahead of ours must not make a negative one."""
    import time

    from web.metrics import DELIVERY_LATENCY, observe_write

    def counts():
        found = {s.name: s.value for m in DELIVERY_LATENCY.collect() for s in m.samples
                 if s.name.endswith(("_count", "_sum"))}
        return (found["sse_delivery_latency_seconds_count"],
                found["sse_delivery_latency_seconds_sum"])
    count, total = counts()
    observe_write(0)
    assert counts() == (count, total)
    observe_write(int(time.time() * 1000) + 60_000)
    assert counts() == (count + 1, total)


def test_the_workers_are_this_one_and_those_with_a_management_socket(tmp_path):
    """Other files in the directory (a lock, a temporary file) are no worker: a process_*
    series for them would be a worker that does not exist."""
    import os

    from web.instance_dir import PEERS
    from web.metrics import WorkerProcesses
    (tmp_path / PEERS).mkdir()
    for name in ("123.sock", "456.lock", "789.sock.tmp", "x.sock"):
        (tmp_path / PEERS / name).write_text("")
    assert WorkerProcesses(str(tmp_path)).pids() == sorted({os.getpid(), 123})


def test_each_process_figure_names_its_worker_by_pid():
    """Unlabelled, two workers' process_* would be one series jumping between them."""
    import os

    from web.metrics import WorkerProcesses
    samples = [s for m in WorkerProcesses().collect() for s in m.samples]
    assert samples and all(s.labels["pid"] == str(os.getpid()) for s in samples)
