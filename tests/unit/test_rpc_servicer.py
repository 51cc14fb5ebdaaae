"""The management handlers against a fake gateway: the mapper, pagination and errors."""
import base64
import logging

import grpc
import pytest

from actors.gateway import OVERLOADED, STOPPING, Unavailable
from actors.replies import ClientPage, KafkaStatus, LimiterStats, ServiceStats, Stats
from rpc import mapper, sse_pb2 as pb
from rpc.servicer import (
    DEFAULT_LIMIT, MAX_LIMIT, MAX_SUBJECT, OPERATOR_REASON, ManagementServicer,
)
from tests.fakes import FakeGateway, make_client, make_health, make_stats
from tests.unit.rpc_fakes import SubjectGateway

STATS = make_stats()
FORGED = "maintenance\n2026-01-06 12:00:00,000 ERROR   actors.broker: forged\r\x1b[2J\u2028\x85"
HEALTH = make_health(partitions=(("blog.posts", 0), ("blog.posts", 1)), clients=2)


def entry(n, **changes):
    return make_client(n, **changes)


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


def servicer(gateway=None):
    return ManagementServicer(gateway or FakeGateway(stats=STATS, health=HEALTH))


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
    reply = mapper.stats(ServiceStats(STATS, 0, LimiterStats(), 1))
    topics = {name: (t.consumed, t.delivered, t.dropped, t.invalid)
              for name, t in reply.topics.items()}
    assert topics == {"blog.posts": (7, 14, 3, 0), "link.clicks": (3, 3, 0, 0),
                      "bad.topic": (0, 0, 0, 1)}


def test_get_stats_prints_all_four_figures_of_every_topic_zeros_too():
    """As the top-level figures: grpcurl shows "delivered": "0", not no "delivered" at all."""
    from google.protobuf.json_format import MessageToDict
    topics = MessageToDict(mapper.stats(ServiceStats(STATS, 0, LimiterStats(), 1)),
                           preserving_proto_field_name=True)["topics"]
    assert topics["link.clicks"] == {"consumed": "3", "delivered": "3", "dropped": "0",
                                     "invalid": "0"}
    assert all(set(figures) == {"consumed", "delivered", "dropped", "invalid"}
               for figures in topics.values()), topics


def test_get_stats_asks_the_gateway_once():
    gateway = FakeGateway()
    servicer(gateway).GetStats(pb.GetStatsRequest(), Context())
    assert gateway.calls == [("stats",)]


def test_the_mapper_copes_with_a_minimal_broker_reply():
    minimal = Stats(clients=2, events_consumed=10, events_delivered=17, events_dropped=3,
                    invalid_events=1, uptime_seconds=12.5, kafka_state="connected")
    assert mapper.stats(ServiceStats(minimal, 0, LimiterStats(), 1)).topics == {}


def test_every_figure_of_slash_stats_that_grpc_carries_is_mapped_from_its_field():
    """A field renamed on either side fails here instead of reading as 0."""
    reply = mapper.stats(ServiceStats(STATS, 42, LimiterStats(), 1))
    for name in pb.GetStatsResponse.DESCRIPTOR.fields_by_name:
        if name in ("topics", "history_size"):
            continue
        assert getattr(reply, name) == getattr(STATS, name), name
        assert getattr(reply, name), f"{name} is zero in the sample: it proves nothing"


# -- GetClients ---------------------------------------------------------------------------
def test_get_clients_maps_each_client():
    gateway = FakeGateway(clients=[entry(1)])
    reply = servicer(gateway).GetClients(pb.GetClientsRequest(limit=10), Context())
    assert reply.total == 1 and (reply.limit, reply.offset) == (10, 0)
    (client,) = reply.clients
    assert (client.id, client.remote_addr, client.user_agent, client.filter) == (
        "c1", "10.0.0.1", "curl/8", "event_types=blog.*")
    assert list(client.event_types) == ["blog.*"] and list(client.sources) == []
    assert client.connected_at.ToJsonString() == "2025-01-06T12:00:01.250Z"
    assert (client.events_sent, client.events_dropped, client.last_event_id) == (5, 1, "id-1")


def test_get_clients_names_each_clients_subject_and_scope():
    gateway = FakeGateway(clients=[entry(1, subject="alice", scope="event_types=blog.*"),
                                   entry(2, subject="", scope="")])
    reply = servicer(gateway).GetClients(pb.GetClientsRequest(), Context())
    assert [(c.id, c.subject, c.scope) for c in reply.clients] == [
        ("c1", "alice", "event_types=blog.*"), ("c2", "", "")]


def test_a_subject_that_is_not_valid_unicode_does_not_break_the_listing():
    """A JWT's JSON may name a lone surrogate ("\\ud800"); protobuf strings must be UTF-8.
    The listing shows it with a replacement character instead of failing with UNKNOWN."""
    gateway = FakeGateway(clients=[entry(1, subject="al\ud800ice", user_agent="x\udcff"),
                                   entry(2, subject="bob")])
    reply = servicer(gateway).GetClients(pb.GetClientsRequest(), Context())
    reply.SerializeToString()
    assert [(c.subject, c.user_agent) for c in reply.clients] == [
        ("al\ufffdice", "x\ufffd"), ("bob", "curl/8")]


def test_with_auth_off_a_client_has_an_empty_subject_and_scope():
    mapped = mapper.client(entry(1))
    assert (mapped.subject, mapped.scope) == ("", "")


def test_subject_and_scope_are_new_fields_that_old_readers_skip():
    """Fields 11 and 12: a Client written today parses with the old field numbers intact."""
    fields = pb.Client.DESCRIPTOR.fields_by_name
    assert (fields["subject"].number, fields["scope"].number) == (11, 12)
    assert max(f.number for f in pb.Client.DESCRIPTOR.fields
               if f.name not in ("subject", "scope")) == 10


def test_a_client_without_events_has_an_empty_last_event_id():
    assert mapper.client(entry(1, last_event_id="")).last_event_id == ""


def test_get_clients_without_a_limit_asks_for_the_default_page():
    gateway = FakeGateway()
    reply = servicer(gateway).GetClients(pb.GetClientsRequest(), Context())
    assert gateway.calls == [("clients", DEFAULT_LIMIT + 1, 0)] and reply.limit == DEFAULT_LIMIT


def test_an_explicit_limit_of_zero_gives_only_the_total():
    gateway = FakeGateway(clients=[entry(n) for n in range(7)])
    reply = servicer(gateway).GetClients(pb.GetClientsRequest(limit=0), Context())
    assert gateway.calls == [("clients", 0, 0)] and reply.total == 7 and not reply.clients


def test_a_large_limit_is_capped():
    gateway = FakeGateway()
    reply = servicer(gateway).GetClients(pb.GetClientsRequest(limit=50_000, offset=20), Context())
    assert gateway.calls == [("clients", MAX_LIMIT + 1, 20)] and reply.limit == MAX_LIMIT
    assert MAX_LIMIT == 1000        # the cap the README gives operators


def test_pages_follow_the_broker_offsets():
    rpc = servicer(FakeGateway(clients=[entry(n) for n in range(5)]))
    ids = []
    for offset in range(0, 6, 2):
        reply = rpc.GetClients(pb.GetClientsRequest(limit=2, offset=offset), Context())
        assert reply.total == 5 and reply.offset == offset
        ids += [c.id for c in reply.clients]
    assert ids == [f"c{n}" for n in range(5)]


def test_page_tokens_list_everyone_once_while_earlier_clients_leave():
    gateway = FakeGateway(clients=[entry(n) for n in range(5)])
    rpc, ids, token = servicer(gateway), [], ""
    while True:
        reply = rpc.GetClients(pb.GetClientsRequest(limit=2, page_token=token), Context())
        ids += [c.id for c in reply.clients]
        gateway.everyone = gateway.everyone[1:]          # the oldest client leaves each time
        token = reply.next_page_token
        if not token:
            break
    assert ids == [f"c{n}" for n in range(5)]
    assert reply.clients and len(ids) == 5          # the last page is not an empty one


@pytest.mark.parametrize("token", ["nope", "WzEsMl0", "W10", "WyJ4IiwiYyJd", "e30",
                                   "WzFlOTk5LCJjIl0", "WzEsImMiLDNd",
                                   # [2,1e999,"c"], [2,"x","c"], [2,true,"c"], [true,1.0,"c"],
                                   # and a token of version 1 ([1.0,"c1"]: a Unix time)
                                   "WzIsMWU5OTksImMiXQ", "WzIsIngiLCJjIl0", "WzIsdHJ1ZSwiYyJd",
                                   "W3RydWUsMS4wLCJjIl0", "WzEuMCwiYzEiXQ"])
def test_a_page_token_no_answer_gave_is_invalid(token):
    gateway = FakeGateway()
    failure = abort_of(lambda: servicer(gateway).GetClients(
        pb.GetClientsRequest(page_token=token), Context()))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "next_page_token" in failure.details and gateway.calls == []


@pytest.mark.parametrize("forged", [b"[" * 100_000,                # RecursionError in json
                                    b"[" + b"9" * 400 + b', "c"]'])  # OverflowError in isfinite
def test_a_forged_page_token_is_invalid_not_an_exception(forged):
    gateway = FakeGateway()
    token = base64.urlsafe_b64encode(forged).decode()
    failure = abort_of(lambda: servicer(gateway).GetClients(
        pb.GetClientsRequest(page_token=token), Context()))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT and gateway.calls == []


def test_a_page_token_naming_a_client_id_no_client_has_is_invalid_before_any_worker_is_asked():
    """12,000 emoji as the id: a 64 KB request, whose question to another worker (144 KB as
    JSON) that worker refused, and the caller was told to retry (UNAVAILABLE)."""
    gateway = FakeGateway()
    place = ('[2,1.0,"' + "\U0001F600" * 12_000 + '"]').encode()
    token = base64.urlsafe_b64encode(place).rstrip(b"=").decode()
    assert len(pb.GetClientsRequest(page_token=token).SerializeToString()) < 64 * 1024
    failure = abort_of(lambda: servicer(gateway).GetClients(
        pb.GetClientsRequest(limit=1, page_token=token), Context()))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT and gateway.calls == []
    assert mapper.place(mapper.page_token(entry(1)))[1] == entry(1).id    # a real one still reads


GRPCURL_LIMIT = 4 * 1024 * 1024       # grpcurl's (and every gRPC client's) default receive limit


def worst_client(n):
    """As long as a client can make it: a ~4 KB query of event_types (gunicorn's request line
    is 4094 bytes), a 200-character user agent, a 256-character subject, a token's long scope."""
    types = tuple(f"app.{i:02d}." + "x" * 32 for i in range(100))
    scope = "event_types=" + ",".join(f"scope.{i:02d}." + "y" * 50 for i in range(100))
    return entry(n, user_agent="U" * 200, filter="event_types=" + ",".join(types),
                 event_types=types, subject="s" * 256, scope=scope, last_event_id="i" * 60)


def test_a_page_of_long_clients_fits_grpcurls_receive_limit_and_paging_covers_everyone():
    gateway = FakeGateway(clients=[worst_client(n) for n in range(2500)])
    rpc, ids, offset = servicer(gateway), [], 0
    while offset < 2500:
        reply = rpc.GetClients(pb.GetClientsRequest(limit=MAX_LIMIT, offset=offset), Context())
        assert reply.ByteSize() <= GRPCURL_LIMIT and reply.total == 2500
        assert reply.offset == offset and 0 < len(reply.clients) < MAX_LIMIT
        assert reply.limit == len(reply.clients) or offset + len(reply.clients) == 2500
        ids += [c.id for c in reply.clients]
        offset += reply.limit
    assert ids == [f"c{n}" for n in range(2500)]


def test_a_short_page_is_cut_only_when_it_would_not_fit():
    reply = servicer(FakeGateway(clients=[worst_client(n) for n in range(5)])).GetClients(
        pb.GetClientsRequest(limit=MAX_LIMIT), Context())
    assert (reply.limit, len(reply.clients), reply.total) == (MAX_LIMIT, 5, 5)


@pytest.mark.parametrize("request_", [pb.GetClientsRequest(limit=-1),
                                      pb.GetClientsRequest(offset=-1),
                                      pb.GetClientsRequest(offset=-5)])
def test_a_negative_limit_or_offset_is_invalid_and_never_reaches_the_broker(request_):
    gateway = FakeGateway()
    failure = abort_of(lambda: servicer(gateway).GetClients(request_, Context()))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "must be 0 or more" in failure.details
    assert gateway.calls == []


# -- DisconnectClient ---------------------------------------------------------------------
def test_disconnect_client_asks_the_gateway_and_confirms():
    gateway = FakeGateway(connected={"abc"})
    reply = servicer(gateway).DisconnectClient(pb.DisconnectClientRequest(client_id="abc"),
                                               Context())
    assert gateway.calls == [("disconnect", "abc", OPERATOR_REASON)]
    assert (reply.client_id, reply.disconnected) == ("abc", True)


def test_disconnect_client_passes_a_trimmed_reason():
    gateway = FakeGateway(connected={"abc"})
    servicer(gateway).DisconnectClient(
        pb.DisconnectClientRequest(client_id=" abc ", reason=" maintenance " + "x" * 500),
        Context())
    ((_, client_id, reason),) = gateway.calls
    assert client_id == "abc" and reason.startswith("maintenance x")
    assert len(reason) == 200


@pytest.mark.parametrize("method, request_", [
    ("DisconnectClient", pb.DisconnectClientRequest(client_id="abc", reason=FORGED)),
    ("DisconnectSubject", pb.DisconnectSubjectRequest(subject="alice", reason=FORGED)),
])
def test_a_reason_is_one_line_in_the_log_and_for_the_client(caplog, method, request_):
    """The reason goes into log lines (here and when the stream ends): a line break in it
    would let the caller write log lines of its own."""
    gateway = SubjectGateway(connected={"abc"}, streams={"alice": 1})
    with caplog.at_level(logging.INFO):
        getattr(servicer(gateway), method)(request_, Context())
    ((*_, reason),) = gateway.calls
    assert reason.isprintable() and reason.startswith("maintenance") and "ERROR" in reason
    assert all(record.getMessage().isprintable() for record in caplog.records)


def test_the_longest_reason_a_call_can_carry_is_cleaned_without_stalling_the_worker():
    """Every character of the reason was looked at before it was cut to MAX_REASON: a 4 MB
    reason (gRPC's largest request) held the worker's hub, every stream included, ~0.5 s."""
    import time
    gateway = FakeGateway(connected={"abc"})
    request_ = pb.DisconnectClientRequest(client_id="abc", reason="  maint\x00" + "\x07" * 4_000_000)
    started = time.perf_counter()
    servicer(gateway).DisconnectClient(request_, Context())
    assert time.perf_counter() - started < 0.25        # every character looked at: 0.5 s+
    ((*_, reason),) = gateway.calls
    assert reason.startswith("maint") and reason.isprintable() and len(reason) <= 200


def test_an_unknown_client_is_not_found():
    gateway = FakeGateway(connected=())
    failure = abort_of(lambda: servicer(gateway).DisconnectClient(
        pb.DisconnectClientRequest(client_id="abc-123"), Context()))
    assert failure.code == grpc.StatusCode.NOT_FOUND and "abc-123" in failure.details


def test_an_id_longer_than_any_client_has_is_not_found_without_asking():
    """Ids are short; a huge one (too large to ask the other workers) is simply unknown."""
    gateway = FakeGateway(connected=())
    failure = abort_of(lambda: servicer(gateway).DisconnectClient(
        pb.DisconnectClientRequest(client_id="x" * 100_000), Context()))
    assert failure.code == grpc.StatusCode.NOT_FOUND and gateway.calls == []
    assert len(failure.details) < 200


def test_an_empty_client_id_is_invalid():
    gateway = FakeGateway()
    failure = abort_of(lambda: servicer(gateway).DisconnectClient(
        pb.DisconnectClientRequest(client_id="  "), Context()))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT and gateway.calls == []


# -- DisconnectSubject --------------------------------------------------------------------
def test_disconnect_subject_ends_the_subjects_streams_and_counts_them():
    gateway = SubjectGateway(streams={"alice": 3, "bob": 1})
    reply = servicer(gateway).DisconnectSubject(
        pb.DisconnectSubjectRequest(subject="alice", reason=" revoked "), Context(remaining=2))
    assert reply.disconnected == 3
    assert gateway.calls == [("disconnect_subject", "alice", "revoked")]
    assert gateway.deadlines == [2] and gateway.streams == {"bob": 1}


def test_disconnect_subject_without_a_reason_gives_the_operators():
    gateway = SubjectGateway(streams={"alice": 1})
    servicer(gateway).DisconnectSubject(pb.DisconnectSubjectRequest(subject="alice"), Context())
    assert gateway.calls == [("disconnect_subject", "alice", OPERATOR_REASON)]


def test_the_subject_is_matched_exactly_as_the_token_names_it():
    gateway = SubjectGateway(streams={" Alice": 1})
    reply = servicer(gateway).DisconnectSubject(
        pb.DisconnectSubjectRequest(subject=" Alice"), Context())
    assert reply.disconnected == 1 and gateway.calls[0][1] == " Alice"


def test_a_subject_without_streams_is_zero_and_printed():
    reply = servicer(SubjectGateway()).DisconnectSubject(
        pb.DisconnectSubjectRequest(subject="nobody-here"), Context())
    assert reply.HasField("disconnected") and reply.disconnected == 0


@pytest.mark.parametrize("subject, says", [("", "subject is required"),
                                           ("x" * (MAX_SUBJECT + 1), "at most 1024")])
def test_an_empty_or_overlong_subject_is_invalid_and_never_reaches_the_broker(subject, says):
    gateway = SubjectGateway(streams={"": 1})
    failure = abort_of(lambda: servicer(gateway).DisconnectSubject(
        pb.DisconnectSubjectRequest(subject=subject), Context()))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT and says in failure.details
    assert gateway.calls == []


def test_a_subject_of_the_longest_length_is_accepted():
    gateway = SubjectGateway(streams={"x" * MAX_SUBJECT: 2})
    reply = servicer(gateway).DisconnectSubject(
        pb.DisconnectSubjectRequest(subject="x" * MAX_SUBJECT), Context())
    assert reply.disconnected == 2


@pytest.mark.parametrize("message", [OVERLOADED, STOPPING])
def test_disconnect_subject_while_the_core_does_not_answer_is_unavailable(message):
    gateway = SubjectGateway(streams={"alice": 1}, error=Unavailable(message))
    failure = abort_of(lambda: servicer(gateway).DisconnectSubject(
        pb.DisconnectSubjectRequest(subject="alice"), Context()))
    assert failure.code == grpc.StatusCode.UNAVAILABLE and "retry" in failure.details


# -- GetHealth ----------------------------------------------------------------------------
def test_get_health_mirrors_slash_health():
    reply = servicer().GetHealth(pb.GetHealthRequest(), Context())
    assert reply.status == "ok" and reply.clients == 2
    assert (reply.kafka.state, list(reply.kafka.partitions)) == (
        "connected", ["blog.posts:0", "blog.posts:1"])


def test_get_health_reports_a_degraded_kafka():
    gateway = FakeGateway(health=make_health("unreachable", partitions=(),
                                             detail="no broker answers"))
    reply = servicer(gateway).GetHealth(pb.GetHealthRequest(), Context())
    assert (reply.status, reply.kafka.state, reply.kafka.detail) == (
        "degraded", "unreachable", "no broker answers")


# -- failures of the actor system ---------------------------------------------------------
@pytest.mark.parametrize("message", [OVERLOADED, STOPPING])
def test_an_actor_that_does_not_answer_is_unavailable(message):
    failure = abort_of(lambda: servicer(FakeGateway(error=Unavailable(message))).GetHealth(
        pb.GetHealthRequest(), Context()))
    assert failure.code == grpc.StatusCode.UNAVAILABLE and "retry" in failure.details


def test_the_ask_is_given_the_callers_deadline():
    gateway = FakeGateway()
    servicer(gateway).GetHealth(pb.GetHealthRequest(), Context(remaining=0.3))
    servicer(gateway).GetHealth(pb.GetHealthRequest(), Context(remaining=None))
    assert gateway.deadlines == [0.3, None]


def test_the_health_reply_is_mapped_field_by_field():
    reply = mapper.health(make_health("unreachable", partitions=(("a", 1),), clients=3,
                                      detail="no broker"))
    assert (reply.status, reply.clients) == ("degraded", 3)
    assert reply.kafka == pb.KafkaStatus(state="unreachable", detail="no broker",
                                         partitions=["a:1"])
    assert ClientPage(0).clients == () and KafkaStatus("x").partitions == ()


# -- the real gateway behind the handlers -------------------------------------------------
def test_disconnect_subject_reaches_the_broker_through_the_real_gateway():
    """The contract with actors/: Gateway.disconnect_subject(subject, reason, timeout=) asks the
    broker DisconnectSubject(subject, reason) and returns its count."""
    from actors.gateway import Gateway
    from actors.messages import DisconnectSubject
    from actors.settings import Settings
    from tests.fakes import FakeRef

    broker = FakeRef({DisconnectSubject: 4})
    gateway = Gateway(Settings.defaults(), broker=broker, history=FakeRef(), limiter=FakeRef())
    reply = ManagementServicer(gateway).DisconnectSubject(
        pb.DisconnectSubjectRequest(subject="alice", reason="revoked"), Context(remaining=1.0))
    assert reply.disconnected == 4
    assert broker.mailbox == [DisconnectSubject("alice", "revoked")]
