"""The server's wiring, in-process on plain threads with mocked actors: auth, health, reflection."""
import logging
import time
from types import SimpleNamespace

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from actors.gateway import OVERLOADED, STOPPING, Unavailable
from actors.instance import InstanceGateway
from actors.settings import Settings
from rpc import sse_pb2 as pb, sse_pb2_grpc
from rpc.auth import BearerAuth, bearer_token
from rpc.health import NOT_SERVING, SERVING, KafkaHealth
from rpc.peers import Peers, PeerServer, socket_path
from rpc.server import build_server, start_server
from tests.fakes import FakeGateway, make_health
from tests.harness import free_port
from tests.unit.rpc_fakes import SubjectGateway
from web import create_app


def make_gateway(status="ok"):
    return SubjectGateway(health=make_health("connected" if status == "ok" else "connecting",
                                             detail=""), streams={"alice": 2})


@pytest.fixture
def running():
    started = []

    def start(token="", status="ok"):
        settings = Settings.defaults(grpc_host="127.0.0.1", grpc_port=free_port(),
                                     grpc_auth_token=token)
        gateway = make_gateway(status)
        server = build_server(settings, gateway).start()
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        started.append((server, channel))
        return SimpleNamespace(server=server, gateway=gateway, channel=channel,
                               sse=sse_pb2_grpc.SSEManagementServiceStub(channel),
                               health=health_pb2_grpc.HealthStub(channel))

    yield start
    for server, channel in started:
        channel.close()
        server.stop(None)


def code_of(call):
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details()


# -- auth ---------------------------------------------------------------------------------
@pytest.mark.parametrize("metadata, token", [
    ((("authorization", "Bearer s3cret"),), "s3cret"),
    ((("authorization", "bearer   s3cret "),), "s3cret"),
    ((("x-other", "1"), ("authorization", "Basic czNjcmV0")), None),
    ((("authorization", "Bearer"),), None),
    ((), None),
    # two entries: refused whatever their order (the first decided: [right, wrong] was let in
    # and [wrong, right] refused; a gRPC audit)
    ((("authorization", "Bearer s3cret"), ("authorization", "Bearer other")), None),
    ((("authorization", "Bearer other"), ("authorization", "Bearer s3cret")), None),
])
def test_bearer_token_is_read_from_the_authorization_metadata(metadata, token):
    assert bearer_token(metadata) == token


def test_an_empty_token_cannot_make_an_interceptor():
    with pytest.raises(ValueError):
        BearerAuth("")


def test_with_a_token_management_calls_need_it(running):
    api = running(token="s3cret")
    for metadata in (None, [("authorization", "Bearer wrong")], [("authorization", "s3cret")],
                     [("authorization", "Bearer s3cretX")], [("authorization", "Bearer s3cre")]):
        code, details = code_of(lambda: api.sse.GetStats(pb.GetStatsRequest(), metadata=metadata,
                                                          timeout=5))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "Bearer" in details
    reply = api.sse.GetStats(pb.GetStatsRequest(), timeout=5,
                             metadata=[("authorization", "Bearer s3cret")])
    assert reply.kafka_state == "connected"
    assert api.gateway.of("stats") == [("stats",)]     # only the authorised call asked


def test_a_refused_management_call_is_logged_without_its_token_at_most_20_a_minute(
        running, caplog):
    api = running(token="s3cret-of-the-service")
    caplog.set_level(logging.WARNING, logger="rpc.auth")
    for metadata in (None, [("authorization", "Bearer guessed-token-1")]):
        code_of(lambda: api.sse.GetStats(pb.GetStatsRequest(), metadata=metadata, timeout=5))
    lines = [r.getMessage() for r in caplog.records if r.name == "rpc.auth"]
    assert len(lines) == 2
    assert "/sse.SSEManagementService/GetStats" in lines[0] and "127.0.0.1" in lines[0]
    assert lines[0].endswith("refused: no bearer token")
    assert lines[1].endswith("refused: a wrong bearer token")
    assert not any("guessed-token" in line or "s3cret" in line for line in lines)
    for _ in range(30):
        code_of(lambda: api.sse.GetStats(pb.GetStatsRequest(), timeout=5))
    assert len([r for r in caplog.records if r.name == "rpc.auth"]) == 20


def test_with_a_token_disconnect_subject_needs_it_too(running):
    api = running(token="s3cret")
    request = pb.DisconnectSubjectRequest(subject="alice")
    for metadata in (None, [("authorization", "Bearer wrong")]):
        code, details = code_of(lambda m=metadata: api.sse.DisconnectSubject(
            request, metadata=m, timeout=5))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "Bearer" in details
    assert api.gateway.of("disconnect_subject") == []
    reply = api.sse.DisconnectSubject(request, timeout=5,
                                      metadata=[("authorization", "Bearer s3cret")])
    assert reply.disconnected == 2
    assert api.gateway.of("disconnect_subject") == [
        ("disconnect_subject", "alice", "disconnected by operator")]


def test_disconnect_subject_over_the_wire_without_a_token(running):
    api = running()
    assert api.sse.DisconnectSubject(pb.DisconnectSubjectRequest(subject="alice"),
                                     timeout=5).disconnected == 2
    code, details = code_of(lambda: api.sse.DisconnectSubject(pb.DisconnectSubjectRequest(),
                                                              timeout=5))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "subject is required" in details


@pytest.mark.parametrize("subject", [" ", "\u00a0", " alice "])
def test_disconnect_subject_takes_the_subject_exactly_as_a_token_may_name_it(running, subject):
    api = running()
    api.gateway.streams[subject] = 3
    reply = api.sse.DisconnectSubject(pb.DisconnectSubjectRequest(subject=subject), timeout=5)
    assert reply.disconnected == 3 and api.gateway.streams == {"alice": 2}


def test_with_a_token_health_and_reflection_stay_open(running):
    api = running(token="s3cret")
    assert api.health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == SERVING
    services = ProtoReflectionDescriptorDatabase(api.channel).get_services()
    assert "sse.SSEManagementService" in services


def test_without_a_token_every_call_is_open(running):
    api = running()
    assert api.sse.GetHealth(pb.GetHealthRequest(), timeout=5).status == "ok"


def test_an_unknown_method_stays_unimplemented_behind_auth(running):
    api = running(token="s3cret")
    call = api.channel.unary_unary("/sse.SSEManagementService/Nope")
    assert code_of(lambda: call(b"", timeout=5))[0] == grpc.StatusCode.UNIMPLEMENTED


# -- requests that are not the method's message --------------------------------------------
TRUNCATED = b"\x08"                 # a varint field cut off: no message parses from it
NOT_UTF8 = b"\x0a\x02\xff\xfe"     # field 1 as a string that is not UTF-8


@pytest.mark.parametrize("method, body, token", [
    ("/sse.SSEManagementService/GetClients", TRUNCATED, ""),
    ("/sse.SSEManagementService/GetStats", TRUNCATED, "s3cret"),
    ("/sse.SSEManagementService/DisconnectSubject", NOT_UTF8, ""),
    ("/sse.SSEManagementService/DisconnectClient", NOT_UTF8, "s3cret"),
    ("/grpc.health.v1.Health/Check", TRUNCATED, ""),
    ("/grpc.health.v1.Health/Watch", NOT_UTF8, ""),
])
def test_a_request_that_does_not_parse_is_invalid_argument_with_one_log_line(running, caplog,
                                                                              method, body,
                                                                              token):
    api = running(token=token)
    metadata = [("authorization", f"Bearer {token}")] if token else None
    if method.endswith("/Watch"):
        call = api.channel.unary_stream(method)
        code, details = code_of(lambda: list(call(body, timeout=5, metadata=metadata)))
    else:
        call = api.channel.unary_unary(method)
        code, details = code_of(lambda: call(body, timeout=5, metadata=metadata))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert "Error parsing message" in details and "reflection" in details, details
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in caplog.records if method in r.getMessage()]


def test_a_reflection_request_that_does_not_parse_is_invalid_argument(running, caplog):
    api = running()
    call = api.channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/"
                                     "ServerReflectionInfo")
    code, details = code_of(lambda: list(call(iter([TRUNCATED]), timeout=5)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Error parsing message" in details
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_a_flood_of_requests_that_do_not_parse_logs_a_bounded_number_of_lines(running, caplog):
    """Health is open to anyone who reaches the port: one warning per garbage call let a
    stranger write 26 KB of log a second (2 GB a day) from one connection."""
    from rpc.decoding import LINES_PER_INTERVAL
    api = running(token="s3cret")
    call = api.channel.unary_unary("/grpc.health.v1.Health/Check")
    for _ in range(3 * LINES_PER_INTERVAL):
        assert code_of(lambda: call(TRUNCATED, timeout=5))[0] == grpc.StatusCode.INVALID_ARGUMENT
    lines = [r.getMessage() for r in caplog.records if "does not parse" in r.getMessage()]
    assert len(lines) == LINES_PER_INTERVAL, lines


def test_refusals_past_the_budget_are_counted_in_the_next_interval_s_first_line(caplog):
    from rpc.decoding import INTERVAL_S, LINES_PER_INTERVAL, RefusalLog
    now = [0.0]
    log = RefusalLog(clock=lambda: now[0])
    for _ in range(LINES_PER_INTERVAL + 5):
        log.refused("/grpc.health.v1.Health/Check", "Wire format was corrupt")
    now[0] += INTERVAL_S
    log.refused("/grpc.health.v1.Health/Watch", "Wire format was corrupt")
    log.refused("/grpc.health.v1.Health/Watch", "Wire format was corrupt")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == LINES_PER_INTERVAL + 2
    assert lines[-2].endswith("(+5 more since the last report)") and "Watch" in lines[-2]
    assert "more" not in lines[-1]


def test_without_the_token_a_request_that_does_not_parse_is_still_unauthenticated(running):
    api = running(token="s3cret")
    call = api.channel.unary_unary("/sse.SSEManagementService/GetClients")
    assert code_of(lambda: call(TRUNCATED, timeout=5))[0] == grpc.StatusCode.UNAUTHENTICATED


# -- connections -----------------------------------------------------------------------------
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _still_open(socks) -> int:
    count = 0
    for sock in socks:
        sock.setblocking(False)
        try:
            while sock.recv(65536):
                pass
        except BlockingIOError:
            count += 1                 # nothing to read, not closed
        except OSError:
            pass
    return count


def test_strangers_cannot_take_every_file_descriptor_of_the_worker(running):
    """Every connection to the port is a file descriptor of the worker, held until it has
    carried no call for IDLE_CONNECTION_MS: 2,600 of them (an HTTP/2 preface each, no token
    needed) filled a worker whose limit was 2,456, and it accepted no HTTP client."""
    import socket
    import time

    from rpc.server import MAX_CONNECTIONS
    api = running(token="s3cret")
    socks = [socket.create_connection(("127.0.0.1", api.server.port))
             for _ in range(MAX_CONNECTIONS + 20)]
    try:
        for sock in socks:
            sock.sendall(H2_PREFACE)
        deadline = time.monotonic() + 5
        while _still_open(socks) > MAX_CONNECTIONS and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _still_open(socks) == MAX_CONNECTIONS
    finally:
        for sock in socks:
            sock.close()
    deadline = time.monotonic() + 5          # their places are free again
    while time.monotonic() < deadline:
        try:
            assert api.health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
            break
        except grpc.RpcError:
            time.sleep(0.2)
    else:
        pytest.fail("no place for a new connection once the others closed")


def test_a_request_larger_than_any_management_request_is_refused_unread(running):
    """grpc takes 4 MB messages by default, whoever sends them (health needs no token): 100
    such health checks at once raised the worker's memory by 200 MB."""
    from rpc.server import MAX_MESSAGE_BYTES
    api = running(token="s3cret")
    big = health_pb2.HealthCheckRequest(service="x" * (MAX_MESSAGE_BYTES + 1))
    code, details = code_of(lambda: api.health.Check(big, timeout=5))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
    reason = "r" * (MAX_MESSAGE_BYTES // 2)       # the largest requests an operator sends fit
    metadata = [("authorization", "Bearer s3cret")]
    assert api.sse.DisconnectSubject(pb.DisconnectSubjectRequest(subject="alice", reason=reason),
                                     timeout=5, metadata=metadata).disconnected == 2


# -- long-lived streams ----------------------------------------------------------------------
def _open_streams(api, count, kind):
    """`count` open streams that stay open (health Watch, or reflection that sends nothing)."""
    import queue
    import threading
    calls = []
    for _ in range(count):
        if kind == "watch":
            call = api.health.Watch(health_pb2.HealthCheckRequest(), timeout=20)
        else:
            idle = queue.Queue()
            call = api.channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/"
                                             "ServerReflectionInfo")(iter(idle.get, None),
                                                                     timeout=20)
        calls.append(call)
        threading.Thread(target=lambda c=call: _drain(c), daemon=True).start()
    return calls


def _drain(call):
    try:
        for _ in call:
            pass
    except grpc.RpcError:
        pass


@pytest.mark.parametrize("kind", ["watch", "reflection"])
def test_open_streams_cannot_take_every_handler_from_the_management_calls(running, kind):
    """Health and reflection need no token, and each open stream holds one of the server's
    HANDLER_THREADS handlers: eight of them made every call wait (GetStats and Check timed out)."""
    import time
    from rpc.server import MAX_STREAMS, HANDLER_THREADS
    assert MAX_STREAMS < HANDLER_THREADS
    api = running(token="s3cret")
    calls = _open_streams(api, HANDLER_THREADS, kind)
    try:
        time.sleep(0.5)
        reply = api.sse.GetStats(pb.GetStatsRequest(), timeout=3,
                                 metadata=[("authorization", "Bearer s3cret")])
        assert reply.kafka_state == "connected"
        assert api.health.Check(health_pb2.HealthCheckRequest(), timeout=3).status == SERVING
        refused = [c for c in calls if c.done()]       # code() waits for an open one's end
        assert {c.code() for c in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert len(refused) == HANDLER_THREADS - MAX_STREAMS
        assert "Check" in refused[0].details()
    finally:
        for call in calls:
            call.cancel()


def test_a_stream_that_ends_gives_its_place_back(running):
    import time
    from rpc.server import MAX_STREAMS
    api = running()
    for _ in range(3):
        calls = _open_streams(api, MAX_STREAMS, "watch")
        time.sleep(0.3)
        assert all(c.code() is None or c.code() == grpc.StatusCode.OK for c in calls if c.done())
        for call in calls:
            call.cancel()
        time.sleep(0.3)
    last = _open_streams(api, 1, "watch")[0]
    time.sleep(0.3)
    assert not last.done()
    last.cancel()


def _reflection_services(api, metadata=()):
    from grpc_reflection.v1alpha import reflection_pb2
    call = api.channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    replies = call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                   timeout=3, metadata=metadata)
    return {s.name for reply in replies for s in reply.list_services_response.service}


def test_anonymous_streams_cannot_lock_the_operator_out_of_grpcurl(running):
    """Health and reflection need no token: anyone who reached the port held every streaming
    place with idle Watch calls, and the operator's grpcurl (reflection first, even with the
    token) was refused RESOURCE_EXHAUSTED."""
    import time
    from rpc.server import MAX_STREAMS, HANDLER_THREADS, OPERATOR_STREAMS
    assert MAX_STREAMS + OPERATOR_STREAMS < HANDLER_THREADS        # unary calls keep a handler
    api = running(token="s3cret")
    calls = _open_streams(api, MAX_STREAMS + 2, "watch")
    try:
        time.sleep(0.5)
        assert "sse.SSEManagementService" in _reflection_services(
            api, metadata=[("authorization", "Bearer s3cret")])
        with pytest.raises(grpc.RpcError) as refused:
            _reflection_services(api)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        for call in calls:
            call.cancel()


def test_the_operator_takes_the_common_places_first_then_its_own(running):
    import time
    from rpc.server import MAX_STREAMS, OPERATOR_STREAMS
    api = running(token="s3cret")
    token = [("authorization", "Bearer s3cret")]
    calls = [api.health.Watch(health_pb2.HealthCheckRequest(), timeout=20, metadata=token)
             for _ in range(MAX_STREAMS + OPERATOR_STREAMS + 1)]
    try:
        time.sleep(0.5)
        refused = [c for c in calls if c.done()]
        assert len(refused) == 1
        assert refused[0].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "management token" in refused[0].details()
    finally:
        for call in calls:
            call.cancel()


# -- health and reflection ----------------------------------------------------------------
def test_reflection_lists_the_management_health_and_reflection_services(running):
    api = running()
    database = ProtoReflectionDescriptorDatabase(api.channel)
    assert set(database.get_services()) >= {"sse.SSEManagementService",
                                             "grpc.health.v1.Health",
                                             "grpc.reflection.v1alpha.ServerReflection"}
    method = database.FindFileContainingSymbol("sse.SSEManagementService")
    assert method.name == "sse.proto"


@pytest.mark.parametrize("service", ["", "sse.SSEManagementService"])
def test_health_follows_kafka(running, service):
    request = health_pb2.HealthCheckRequest(service=service)
    assert running("", "ok").health.Check(request, timeout=5).status == SERVING
    assert running("", "degraded").health.Check(request, timeout=5).status == NOT_SERVING


def test_health_list_answers_both_services(running):
    """Reflection names List (grpcio's health proto has it); grpcio's servicer left it
    UNIMPLEMENTED."""
    api = running("", "ok")
    reply = api.health.List(health_pb2.HealthListRequest(), timeout=5)
    assert {name: status.status for name, status in reply.statuses.items()} == {
        "": SERVING, "sse.SSEManagementService": SERVING}
    reply = running("", "degraded").health.List(health_pb2.HealthListRequest(), timeout=5)
    assert {status.status for status in reply.statuses.values()} == {NOT_SERVING}


class SlowHealth(FakeGateway):
    """A worker that answers its health after `delay` seconds (busy: a reconnect storm)."""

    def __init__(self, delay, **kwargs):
        super().__init__(**kwargs)
        self.delay = delay

    def health(self, timeout=None):
        time.sleep(self.delay)
        return super().health(timeout)


def test_grpc_health_is_serving_exactly_when_readyz_is_200_with_a_slow_worker(tmp_path):
    """A worker answering in 1.3 s: /readyz (2 s to answer) said 200, the health loop (1 s)
    NOT_SERVING, and a load balancer probing over gRPC pulled a ready instance."""
    directory = str(tmp_path)
    busy = PeerServer(SlowHealth(1.3, health=make_health(clients=1)),
                      socket_path(directory, 1002)).start()
    try:
        whole = InstanceGateway(FakeGateway(health=make_health(clients=1)),
                                Peers(directory, own_path=socket_path(directory, 1001)))
        readyz = create_app(Settings.defaults(), gateway=whole).test_client().get("/readyz")
        status = KafkaHealth(whole).refresh()
        assert readyz.status_code == 200 and status == SERVING, (readyz.json, status)
    finally:
        busy.stop()


def test_health_turns_not_serving_when_the_system_stops_or_the_broker_is_gone():
    gateway = make_gateway("ok")
    health = KafkaHealth(gateway)
    assert health.refresh() == SERVING
    gateway.error = Unavailable(STOPPING)
    assert health.refresh() == NOT_SERVING
    assert KafkaHealth(make_gateway("degraded")).refresh() == NOT_SERVING


def test_stopping_the_server_makes_health_not_serving_for_good():
    health = KafkaHealth(make_gateway("ok"))
    health.refresh()
    health.stop()
    assert health.refresh() == NOT_SERVING
    assert health.servicer._server_status[""] == NOT_SERVING


def test_the_health_loop_is_started_and_stopped_by_its_owner():
    health = KafkaHealth(make_gateway("ok"), interval=0.05)
    assert not health.running
    health.start()
    assert health.running
    health.stop()
    assert not health.running


class _Watching:
    """A ServicerContext of a health Watch: its close callbacks run when the test ends it."""

    def __init__(self):
        self.callbacks = []

    def add_callback(self, callback):
        self.callbacks.append(callback)
        return True

    def end(self):
        for callback in self.callbacks:
            callback()


def test_watches_that_ended_leave_nothing_behind_whatever_service_they_named():
    """Watch is open to anyone and its service name is the caller's text: each name used to
    stay in the servicer, with an empty set, for the worker's life (200 Watch calls naming
    1 MB services raised a worker's RSS from 89 to 291 MB)."""
    from rpc.health import SERVICES
    servicer = KafkaHealth(make_gateway("ok")).servicer
    sent = []
    for i in range(50):
        for service in (f"made-up-{i}", ""):
            watching = _Watching()
            servicer.Watch(health_pb2.HealthCheckRequest(service=service), watching,
                           send_response_callback=sent.append)
            watching.end()
    assert set(servicer._send_response_callbacks) <= set(SERVICES)
    assert sent.count(None) == 100                  # every watch was told it ended
    lasting = _Watching()
    servicer.Watch(health_pb2.HealthCheckRequest(service=""), lasting,
                   send_response_callback=sent.append)
    servicer.set("", NOT_SERVING)                   # a watch still open hears of a change
    assert sent[-1].status == NOT_SERVING
    lasting.end()


class _Deadline:
    """A ServicerContext with `seconds` left of the caller's deadline (None: no deadline)."""

    def __init__(self, seconds):
        self.seconds = seconds

    def time_remaining(self):
        return self.seconds


def test_check_asks_within_the_callers_deadline():
    gateway = make_gateway("ok")
    health = KafkaHealth(gateway)
    reply = health.servicer.Check(health_pb2.HealthCheckRequest(), _Deadline(0.1))
    assert reply.status == SERVING
    assert 0 < gateway.deadlines[-1] < 0.1          # answered before the caller gives up


def test_check_with_a_short_deadline_answers_the_last_status_when_the_core_is_slow():
    """A probe too hurried to hear the core out must not turn the instance NOT_SERVING (for
    every Watch too): it gets the status of the last full check; the loop decides."""
    gateway = make_gateway("ok")
    health = KafkaHealth(gateway)
    health.refresh()
    gateway.error = Unavailable(OVERLOADED)
    reply = health.servicer.Check(health_pb2.HealthCheckRequest(), _Deadline(0.1))
    assert reply.status == SERVING and health.status == SERVING
    gateway.report = make_health("connecting")
    gateway.error = None
    reply = health.servicer.Check(health_pb2.HealthCheckRequest(), _Deadline(0.1))
    assert reply.status == SERVING and health.status == SERVING
    assert health.servicer.Check(health_pb2.HealthCheckRequest(),
                                 _Deadline(None)).status == NOT_SERVING


def test_check_with_no_time_left_does_not_ask():
    gateway = make_gateway("ok")
    health = KafkaHealth(gateway)
    health.refresh()
    asked = len(gateway.calls)
    reply = health.servicer.Check(health_pb2.HealthCheckRequest(), _Deadline(0.0))
    assert reply.status == SERVING and len(gateway.calls) == asked


def test_check_with_a_short_deadline_still_sees_a_stopping_core():
    gateway = make_gateway("ok")
    health = KafkaHealth(gateway)
    health.refresh()
    gateway.error = Unavailable(STOPPING)
    reply = health.servicer.Check(health_pb2.HealthCheckRequest(), _Deadline(0.1))
    assert reply.status == NOT_SERVING


# -- start_server -------------------------------------------------------------------------
def test_port_zero_turns_the_api_off(caplog):
    from rpc.server import start_management
    with caplog.at_level(logging.INFO, logger="rpc.server"):
        management = start_management(Settings.defaults(grpc_port=0), make_gateway())
    assert management.server is None and management._retrying is None
    assert "management API (gRPC) is off (GRPC_PORT=0)" in caplog.text


def test_without_a_token_start_warns_that_the_api_is_unauthenticated(caplog):
    settings = Settings.defaults(grpc_host="127.0.0.1", grpc_port=free_port())
    with caplog.at_level(logging.INFO, logger="rpc.server"):
        server = start_server(settings, make_gateway())
    try:
        assert any(r.levelno == logging.WARNING and "unauthenticated" in r.getMessage()
                   for r in caplog.records)
    finally:
        server.stop(None)


def test_with_a_token_start_does_not_warn_that_the_api_is_unauthenticated(caplog):
    """GRPC_AUTH_TOKEN protects the API without client certificates: no warning at each
    worker's start that anyone can list and disconnect clients."""
    settings = Settings.defaults(grpc_host="127.0.0.1", grpc_port=free_port(),
                                 grpc_auth_token="s3cret")
    with caplog.at_level(logging.INFO, logger="rpc.server"):
        server = start_server(settings, make_gateway())
    server.stop(None)
    assert "listening on" in caplog.text and "unauthenticated" not in caplog.text


def test_an_ipv6_grpc_host_is_listened_on(caplog):
    """GRPC_HOST=::1 (or :: for every address): gRPC reads a bare `::1:50051` as an address
    without a port, so it is given in brackets, as the log line says it."""
    port = free_port()
    settings = Settings.defaults(grpc_host="::1", grpc_port=port, grpc_auth_token="t")
    with caplog.at_level(logging.INFO, logger="rpc.server"):
        server = start_server(settings, make_gateway())
    try:
        with grpc.insecure_channel(f"[::1]:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                              timeout=5)
        assert reply.status == SERVING
        assert f"listening on [::1]:{port}:" in caplog.text
    finally:
        server.stop(None)


def test_the_server_says_serving_from_its_start_and_not_serving_from_its_stop():
    """Health.Watch and List answer what the health loop last found: SERVING from the start,
    not NOT_SERVING until the loop's first turn a second later. At a worker's exit the loop
    stops asking the gateway, and Watch clients (a load balancer) hear NOT_SERVING during
    the grace, before the port goes."""
    settings = Settings.defaults(grpc_host="127.0.0.1", grpc_port=free_port(),
                                 grpc_auth_token="t")
    server = build_server(settings, make_gateway()).start()
    assert server.health.running and server.health.status == SERVING
    server.stop(None)
    assert not server.health.running
    assert server.health.servicer._server_status[""] == NOT_SERVING


def test_with_a_certificate_the_api_speaks_tls_only(tmp_path, caplog):
    """GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE: a client that trusts the certificate is
    served, the token travels encrypted; a plaintext client is not served."""
    from tests.unit.pki import make_pki
    pki = make_pki(tmp_path)
    settings = Settings.defaults(grpc_host="127.0.0.1", grpc_port=free_port(),
                                 grpc_auth_token="s3cret-token-16chars",
                                 grpc_tls_cert_file=pki["server_cert"],
                                 grpc_tls_key_file=pki["server_key"])
    with caplog.at_level(logging.INFO, logger="rpc.server"):
        server = start_server(settings, make_gateway())
    with open(pki["server_cert"], "rb") as trusted:
        credentials = grpc.ssl_channel_credentials(root_certificates=trusted.read())
    secure = grpc.secure_channel(f"localhost:{server.port}", credentials)
    plain = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        reply = sse_pb2_grpc.SSEManagementServiceStub(secure).GetStats(
            pb.GetStatsRequest(), metadata=[("authorization", "Bearer s3cret-token-16chars")],
            timeout=5)
        assert reply.clients == make_gateway().stats().broker.clients
        code, _ = code_of(lambda: health_pb2_grpc.HealthStub(plain).Check(
            health_pb2.HealthCheckRequest(), timeout=2))
        assert code is grpc.StatusCode.UNAVAILABLE
        assert any(f"listening on 127.0.0.1:{server.port} with TLS" in r.getMessage()
                   for r in caplog.records)
    finally:
        secure.close()
        plain.close()
        server.stop(None)


def test_with_a_client_ca_only_clients_with_its_certificates_are_served(tmp_path, caplog):
    """GRPC_TLS_CLIENT_CA_FILE: mutual TLS. A client whose certificate the CA issued is
    served (no token needed); one without a certificate, or with another's, is not."""
    from tests.unit.pki import make_pki
    pki = make_pki(tmp_path)
    settings = Settings.defaults(grpc_host="127.0.0.1", grpc_port=free_port(),
                                 grpc_tls_cert_file=pki["server_cert"],
                                 grpc_tls_key_file=pki["server_key"],
                                 grpc_tls_client_ca_file=pki["cert"])   # self-signed: its own CA
    with caplog.at_level(logging.INFO, logger="rpc.server"):
        server = start_server(settings, make_gateway())
    read = {name: open(pki[name], "rb").read() for name in ("server_cert", "cert", "key", "ca",
                                                             "ca_key")}

    def channel(cert=None, key=None):
        return grpc.secure_channel(f"localhost:{server.port}", grpc.ssl_channel_credentials(
            root_certificates=read["server_cert"], private_key=key, certificate_chain=cert))

    channels = [channel(read["cert"], read["key"]), channel(), channel(read["ca"], read["ca_key"])]
    try:
        stubs = [sse_pb2_grpc.SSEManagementServiceStub(c) for c in channels]
        assert stubs[0].GetStats(pb.GetStatsRequest(), timeout=5).clients == \
            make_gateway().stats().broker.clients
        for stub in stubs[1:]:
            code, _ = code_of(lambda: stub.GetStats(pb.GetStatsRequest(), timeout=5))
            assert code is grpc.StatusCode.UNAVAILABLE
        assert any(f"listening on 127.0.0.1:{server.port} with TLS, client certificates "
                   "required" in r.getMessage() for r in caplog.records)
    finally:
        for c in channels:
            c.close()
        server.stop(None)


def test_a_port_in_use_is_refused_not_shared():
    settings = Settings.defaults(grpc_host="127.0.0.1", grpc_port=free_port(),
                                 grpc_auth_token="t")
    first = start_server(settings, make_gateway())
    try:
        with pytest.raises(OSError):        # gRPC's SO_REUSEPORT is off: Management retries
            start_server(settings, make_gateway())
    finally:
        first.stop(None)


# -- several workers: one holds the port, the others stand by ----------------------------------
def test_a_standby_worker_waits_quietly_and_takes_the_port_over_when_it_is_free(caplog):
    import socket
    import time

    from rpc.server import port_taken, start_management
    port = free_port()
    settings = Settings.defaults(grpc_host="127.0.0.1", grpc_port=port)
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    assert port_taken("127.0.0.1", port)
    with caplog.at_level(logging.INFO, logger="rpc.server"):
        management = start_management(settings, make_gateway(), standby=True)
        try:
            time.sleep(1.5)                             # a retry or so while the port is held
            assert management.server is None
            assert any("standing by" in r.getMessage() for r in caplog.records)
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING
                        and "GRPC_AUTH_TOKEN" not in r.getMessage()]
            holder.close()                              # the holding worker died
            freed = time.monotonic()
            while management.server is None and time.monotonic() - freed < 10:
                time.sleep(0.05)
            assert management.server is not None, "the standby worker never took over"
            assert time.monotonic() - freed < 3.0
            # Said as a take-over, not as 'bound ... after 98.7 s of retries' (a worker
            # SIGKILLed under real gunicorn): the standby never failed, it waited its turn.
            [line] = [r.getMessage() for r in caplog.records if "took over" in r.getMessage()
                      or "retries" in r.getMessage()]
            assert line.startswith(f"management API (gRPC) on 127.0.0.1:{port}: took over"), line
        finally:
            management.stop(None)
    assert not port_taken("127.0.0.1", port)


def test_a_port_bound_after_a_warning_is_said_at_its_level(caplog):
    """A worker that warned 'retrying until it is free' said the bind at INFO: with
    LOG_LEVEL=WARNING the log never said the management API was up (a log audit)."""
    import socket
    import time

    from rpc.server import start_management
    port = free_port()
    settings = Settings.defaults(grpc_host="127.0.0.1", grpc_port=port)
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    with caplog.at_level(logging.INFO, logger="rpc.server"):
        management = start_management(settings, make_gateway())
        try:
            holder.close()
            freed = time.monotonic()
            while management.server is None and time.monotonic() - freed < 10:
                time.sleep(0.05)
            assert management.server is not None
            said = [(r.levelname, r.getMessage()) for r in caplog.records
                    if "retr" in r.getMessage()]
            assert [level for level, _ in said] == ["WARNING", "WARNING"], said
            assert "bound" in said[1][1]
        finally:
            management.stop(None)


def test_a_standby_of_a_stopping_worker_does_not_take_the_port_over(caplog):
    """On SIGTERM every worker stops at once; the holder let the port go and a standby, itself
    stopping, took it for a moment: 'listening', the GRPC_AUTH_TOKEN warning and 'bound after
    55.8 s of retries' in every shutdown's log, and calls accepted by a dying worker."""
    import socket
    import time

    from rpc.server import start_management
    port = free_port()
    settings = Settings.defaults(grpc_host="127.0.0.1", grpc_port=port)
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    alive = [True]
    management = start_management(settings, make_gateway(), standby=True,
                                  may_take=lambda: alive[0])
    try:
        alive[0] = False                                # SIGTERM: this worker stops too
        holder.close()                                  # and the holder lets go
        time.sleep(1.5)
        assert management.server is None, "a stopping standby took the port"
    finally:
        management.stop(None)


def test_an_idle_connection_is_closed_so_strangers_cannot_hoard_descriptors(running,
                                                                            monkeypatch):
    """Each open connection costs the worker a descriptor (shared with its streams): one that
    has carried no call for IDLE_CONNECTION_MS is closed (a GOAWAY; clients reconnect)."""
    import socket
    import time

    import rpc.server
    monkeypatch.setattr(rpc.server, "IDLE_CONNECTION_MS", 500)
    api = running()
    sock = socket.create_connection(("127.0.0.1", api.server.port), timeout=5)
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
    started, received = time.monotonic(), b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        pytest.fail("the idle connection was still open after 5 s")
    finally:
        sock.close()
    assert time.monotonic() - started < 4
    frames, at = [], 0                         # HTTP/2 frames: length (3), type, flags, stream
    while at + 9 <= len(received):
        frames.append(received[at + 3])
        at += 9 + int.from_bytes(received[at:at + 3], "big")
    assert 7 in frames, frames                 # a GOAWAY, then the end of the connection
