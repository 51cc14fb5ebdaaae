"""The management handlers against mocked actor refs: the mapper, pagination and errors."""
import threading

import grpc
import pykka
import pytest

from actors.messages import DisconnectClient, GetClients, GetHealth, GetHistorySize, GetStats
from rpc import mapper, sse_pb2 as pb
from rpc.servicer import DEFAULT_LIMIT, MAX_LIMIT, OPERATOR_REASON, ManagementServicer
from tests.fakes import FakeRef

STATS = {
    "clients": 2, "events_consumed": 10, "events_delivered": 17, "events_dropped": 3,
    "invalid_events": 1, "events_replayed": 4, "kafka_replays": 1, "slow_disconnects": 1,
    "connections_total": 5, "filter_groups": 2,
    "per_topic": {"blog.posts": 7, "link.clicks": 3},
    "invalid_per_topic": {"bad.topic": 1},
    "delivered_per_topic": {"blog.posts": 14, "link.clicks": 3},
    "dropped_per_topic": {"blog.posts": 3},
    "kafka_lag": {"blog.posts:0": 12}, "kafka_state": "connected", "uptime_seconds": 12.5,
}
HEALTH = {"status": "ok", "kafka": {"state": "connected", "detail": "",
                                    "partitions": ["blog.posts:0", "blog.posts:1"]},
          "clients": 2}


def entry(n, **changes):
    base = {"id": f"c{n}", "remote_addr": "10.0.0.1", "user_agent": "curl/8",
            "filter": "event_types=blog.*", "event_types": ["blog.*"], "sources": [],
            "connected_at": 1736164800.25 + n, "events_sent": 5, "events_dropped": 1,
            "last_event_id": f"id-{n}"}
    return base | changes


class Aborted(Exception):
    def __init__(self, code, details):
        super().__init__(f"{code}: {details}")
        self.code, self.details = code, details


class Context:
    """A grpc.ServicerContext as far as the handlers use it."""

    def __init__(self, remaining=None):
        self.remaining = remaining

    def abort(self, code, details):
        raise Aborted(code, details)

    def time_remaining(self):
        return self.remaining


class RaisingRef:
    def __init__(self, error):
        self.error, self.timeouts = error, []

    def ask(self, message, timeout=None):
        self.timeouts.append(timeout)
        raise self.error


def servicer(broker=None, history=None, stopping=None):
    broker = broker or FakeRef({GetStats: dict(STATS), GetHealth: HEALTH})
    history = history or FakeRef({GetHistorySize: 42})
    return ManagementServicer(broker=broker, history=history, stopping=stopping)


def abort_of(call):
    with pytest.raises(Aborted) as caught:
        call()
    return caught.value


# -- GetStats -----------------------------------------------------------------------------
def test_get_stats_maps_every_figure_of_slash_stats():
    reply = servicer().GetStats(pb.GetStatsRequest(), Context())
    assert (reply.clients, reply.events_consumed, reply.events_delivered, reply.events_dropped,
            reply.invalid_events) == (2, 10, 17, 3, 1)
    assert (reply.events_replayed, reply.kafka_replays, reply.slow_disconnects,
            reply.connections_total, reply.filter_groups) == (4, 1, 1, 5, 2)
    assert reply.history_size == 42
    assert reply.uptime_seconds == 12.5 and reply.kafka_state == "connected"
    assert dict(reply.kafka_lag) == {"blog.posts:0": 12}


def test_get_stats_merges_the_per_topic_counts_into_one_entry_per_topic():
    reply = mapper.stats(STATS, 0)
    topics = {name: (t.consumed, t.delivered, t.dropped, t.invalid)
              for name, t in reply.topics.items()}
    assert topics == {"blog.posts": (7, 14, 3, 0), "link.clicks": (3, 3, 0, 0),
                      "bad.topic": (0, 0, 0, 1)}


def test_get_stats_asks_the_broker_and_the_history_by_message():
    broker, history = FakeRef({GetStats: dict(STATS)}), FakeRef({GetHistorySize: 0})
    servicer(broker, history).GetStats(pb.GetStatsRequest(), Context())
    assert broker.mailbox == [GetStats()] and history.mailbox == [GetHistorySize()]


def test_the_mapper_copes_with_a_minimal_broker_reply():
    minimal = {k: STATS[k] for k in ("clients", "events_consumed", "events_delivered",
                                      "events_dropped", "invalid_events", "uptime_seconds",
                                      "kafka_state")}
    assert mapper.stats(minimal, 0).topics == {}


# -- GetClients ---------------------------------------------------------------------------
def test_get_clients_maps_each_client():
    broker = FakeRef({GetClients: {"total": 1, "clients": [entry(1)]}})
    reply = servicer(broker).GetClients(pb.GetClientsRequest(limit=10), Context())
    assert reply.total == 1 and (reply.limit, reply.offset) == (10, 0)
    (client,) = reply.clients
    assert (client.id, client.remote_addr, client.user_agent, client.filter) == (
        "c1", "10.0.0.1", "curl/8", "event_types=blog.*")
    assert list(client.event_types) == ["blog.*"] and list(client.sources) == []
    assert client.connected_at.ToJsonString() == "2025-01-06T12:00:01.250Z"
    assert (client.events_sent, client.events_dropped, client.last_event_id) == (5, 1, "id-1")


def test_a_client_without_events_has_an_empty_last_event_id():
    assert mapper.client(entry(1, last_event_id="")).last_event_id == ""
    assert mapper.client(entry(1, last_event_id=None)).last_event_id == ""


def test_get_clients_without_a_limit_asks_for_the_default_page():
    broker = FakeRef({GetClients: {"total": 0, "clients": []}})
    reply = servicer(broker).GetClients(pb.GetClientsRequest(), Context())
    assert broker.mailbox == [GetClients(DEFAULT_LIMIT, 0)] and reply.limit == DEFAULT_LIMIT


def test_an_explicit_limit_of_zero_gives_only_the_total():
    broker = FakeRef({GetClients: {"total": 7, "clients": []}})
    reply = servicer(broker).GetClients(pb.GetClientsRequest(limit=0), Context())
    assert broker.mailbox == [GetClients(0, 0)] and reply.total == 7 and not reply.clients


def test_a_large_limit_is_capped():
    broker = FakeRef({GetClients: {"total": 0, "clients": []}})
    reply = servicer(broker).GetClients(pb.GetClientsRequest(limit=50_000, offset=20), Context())
    assert broker.mailbox == [GetClients(MAX_LIMIT, 20)] and reply.limit == MAX_LIMIT


def test_pages_follow_the_broker_offsets():
    everyone = [entry(n) for n in range(5)]

    class Pager(FakeRef):
        def ask(self, message, timeout=None):
            self.mailbox.append(message)
            page = everyone[message.offset:message.offset + message.limit]
            return {"total": len(everyone), "clients": page}

    rpc = servicer(Pager())
    ids = []
    for offset in range(0, 6, 2):
        reply = rpc.GetClients(pb.GetClientsRequest(limit=2, offset=offset), Context())
        assert reply.total == 5 and reply.offset == offset
        ids += [c.id for c in reply.clients]
    assert ids == [f"c{n}" for n in range(5)]


@pytest.mark.parametrize("request_", [pb.GetClientsRequest(limit=-1),
                                      pb.GetClientsRequest(offset=-5)])
def test_a_negative_limit_or_offset_is_invalid_and_never_reaches_the_broker(request_):
    broker = FakeRef()
    failure = abort_of(lambda: servicer(broker).GetClients(request_, Context()))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "must be 0 or more" in failure.details
    assert broker.mailbox == []


# -- DisconnectClient ---------------------------------------------------------------------
def test_disconnect_client_asks_the_broker_and_confirms():
    broker = FakeRef({DisconnectClient: True})
    reply = servicer(broker).DisconnectClient(pb.DisconnectClientRequest(client_id="abc"),
                                              Context())
    assert broker.mailbox == [DisconnectClient("abc", OPERATOR_REASON)]
    assert (reply.client_id, reply.disconnected) == ("abc", True)


def test_disconnect_client_passes_a_trimmed_reason():
    broker = FakeRef({DisconnectClient: True})
    servicer(broker).DisconnectClient(
        pb.DisconnectClientRequest(client_id=" abc ", reason=" maintenance " + "x" * 500),
        Context())
    (message,) = broker.mailbox
    assert message.client_id == "abc" and message.reason.startswith("maintenance x")
    assert len(message.reason) == 200


def test_an_unknown_client_is_not_found():
    broker = FakeRef({DisconnectClient: False})
    failure = abort_of(lambda: servicer(broker).DisconnectClient(
        pb.DisconnectClientRequest(client_id="abc-123"), Context()))
    assert failure.code == grpc.StatusCode.NOT_FOUND and "abc-123" in failure.details


def test_an_empty_client_id_is_invalid():
    broker = FakeRef()
    failure = abort_of(lambda: servicer(broker).DisconnectClient(
        pb.DisconnectClientRequest(client_id="  "), Context()))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT and broker.mailbox == []


# -- GetHealth ----------------------------------------------------------------------------
def test_get_health_mirrors_slash_health():
    reply = servicer().GetHealth(pb.GetHealthRequest(), Context())
    assert reply.status == "ok" and reply.clients == 2
    assert (reply.kafka.state, list(reply.kafka.partitions)) == (
        "connected", ["blog.posts:0", "blog.posts:1"])


def test_get_health_reports_a_degraded_kafka():
    broker = FakeRef({GetHealth: {"status": "degraded", "clients": 0, "kafka": {
        "state": "unreachable", "detail": "no broker answers", "partitions": []}}})
    reply = servicer(broker).GetHealth(pb.GetHealthRequest(), Context())
    assert (reply.status, reply.kafka.state, reply.kafka.detail) == (
        "degraded", "unreachable", "no broker answers")


# -- failures of the actor system ---------------------------------------------------------
@pytest.mark.parametrize("error", [pykka.Timeout("slow"), pykka.ActorDeadError("gone")])
def test_an_actor_that_does_not_answer_is_unavailable(error):
    failure = abort_of(lambda: servicer(RaisingRef(error)).GetHealth(pb.GetHealthRequest(),
                                                                     Context()))
    assert failure.code == grpc.StatusCode.UNAVAILABLE and "retry" in failure.details


def test_a_stopping_system_is_unavailable_without_asking():
    stopping, broker = threading.Event(), FakeRef()
    stopping.set()
    failure = abort_of(lambda: servicer(broker, stopping=stopping).GetStats(
        pb.GetStatsRequest(), Context()))
    assert failure.code == grpc.StatusCode.UNAVAILABLE and broker.mailbox == []


def test_the_ask_never_outlasts_the_callers_deadline():
    ref = RaisingRef(pykka.Timeout("slow"))
    abort_of(lambda: servicer(ref).GetHealth(pb.GetHealthRequest(), Context(remaining=0.3)))
    abort_of(lambda: servicer(ref).GetHealth(pb.GetHealthRequest(), Context(remaining=1e9)))
    assert ref.timeouts == [0.3, 2.0]
