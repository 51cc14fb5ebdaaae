from actors.client import ClientActor, summary
from actors.filters import Filter
from actors.messages import ClientInfo, Close, Subscribe, Unsubscribe
from actors.outbox import Outbox
from tests.fakes import FakeRef

INFO = ClientInfo("c1", "10.0.0.1", "curl", Filter.parse("blog.*", "blog-service"), True, 12.5)


def _client(**kwargs):
    broker, outbox = FakeRef(), Outbox(10)
    return ClientActor(info=INFO, outbox=outbox, broker=broker, **kwargs), broker, outbox


def test_it_subscribes_with_what_the_client_knows_and_wants():
    client, broker, outbox = _client(known={("blog.posts", 0): 3}, with_history=False,
                                     since_ms=5, recreated={("blog.posts", 1): 9})
    client.on_start()
    [subscribe] = broker.of(Subscribe)
    assert subscribe == Subscribe(INFO, outbox, client.actor_ref, {("blog.posts", 0): 3}, False, 5)
    assert subscribe.recreated == {("blog.posts", 1): 9} and subscribe.client is client.actor_ref


def test_close_ends_the_stream_with_the_reason_and_stop_unsubscribes():
    client, broker, outbox = _client()
    client.on_receive(Close("disconnected by operator"))
    assert outbox.closed_reason == "disconnected by operator"
    assert outbox.take(0)[0] == b": closing: disconnected by operator\n"
    client.on_stop()
    assert broker.of(Unsubscribe) == [Unsubscribe("c1")]
    assert outbox.closed_reason == "disconnected by operator"      # the first reason stays


def test_a_stop_without_close_ends_the_stream():
    client, broker, outbox = _client()
    client.on_stop()
    assert outbox.closed_reason == "stream ended" and broker.of(Unsubscribe) == [Unsubscribe("c1")]


def test_its_summary_is_what_get_clients_lists():
    client, _, outbox = _client()
    outbox.offer(b"data: x\n\n", 2, "id-2")
    outbox.take(0)
    outbox.written(2, "id-2")
    described = summary(client.info, outbox)
    assert (described.id, described.remote_addr, described.user_agent) == ("c1", "10.0.0.1", "curl")
    assert described.event_types == ("blog.*",) and described.sources == ("blog-service",)
    assert described.events_sent == 2 and described.events_dropped == 0
    assert described.last_event_id == "id-2"
    assert described.connected_at == 12.5 and described.filter == INFO.filter.describe()


def test_a_close_with_a_final_frame_ends_the_stream_with_it_instead_of_the_comment():
    client, _, outbox = _client()
    final = b'event: auth-expired\ndata: {"reason":"token expired"}\n\n'
    client.on_receive(Close("auth-expired", final))
    assert outbox.take(0)[0] == final
    assert outbox.finished and outbox.closed_reason == "auth-expired"


def test_the_summary_names_the_subject_and_scope_and_nothing_for_anonymous_clients():
    info = ClientInfo("c2", "10.0.0.1", "curl", Filter.parse("blog.*", None), True, 1.0,
                      subject="alice", scope="event_types=blog.*", expires_at=99.0)
    described = summary(info, Outbox(10))
    assert (described.subject, described.scope) == ("alice", "event_types=blog.*")
    assert described.to_json()["subject"] == "alice"
    assert described.to_json()["scope"] == "event_types=blog.*"
    anonymous = summary(INFO, Outbox(10))
    assert (anonymous.subject, anonymous.scope) == ("", "")
