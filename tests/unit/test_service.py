"""service/main.py, the composition root: all-or-nothing start, reverse stop, loops owned."""
import threading
from types import SimpleNamespace

import pykka
import pytest

from actors import system as actor_system
from actors.client import every_actor
from actors.settings import Settings
from service import main as service_main
from tests.fakes import stop_all
from web import create_app
from web.core import GATEWAY_KEY, write_checker


class Quiet(pykka.ThreadingActor):
    """Stands in for the Kafka consumer: no Kafka in unit tests."""

    def __init__(self, **kwargs):
        super().__init__()


@pytest.fixture
def worker(monkeypatch):
    monkeypatch.setattr(actor_system, "KafkaConsumerActor", Quiet)
    monkeypatch.setattr(service_main, "_tune_gc", lambda: None)
    app = create_app(Settings.defaults(grpc_port=0))
    yield SimpleNamespace(wsgi=app, alive=True)
    stop_all()


def threads(*names):
    return [t for t in threading.enumerate() if t.name in names and t.is_alive()]


LOOPS = ("ticker", "stuck-writes", "shutdown-watch")


def test_start_attaches_the_gateway_and_starts_every_loop_stop_ends_them(worker):
    service = service_main.start_in_worker(worker)
    try:
        assert worker.wsgi.extensions[GATEWAY_KEY] is service.gateway
        assert write_checker(worker.wsgi).running
        assert sorted(t.name for t in threads(*LOOPS)) == sorted(LOOPS)
        assert len(every_actor()) == 5
    finally:
        service_main.stop_in_worker(worker)
    assert worker.wsgi.extensions[GATEWAY_KEY] is None
    assert not write_checker(worker.wsgi).running
    assert threads(*LOOPS) == [] and every_actor() == []
    service_main.stop_in_worker(worker)           # idempotent


def test_a_step_that_fails_undoes_the_steps_before_it(worker, monkeypatch):
    def broken(settings, gateway, standby=False, may_take=None, bind_lock=None):
        raise RuntimeError("no management for you")
    monkeypatch.setattr(service_main, "_start_management", broken)
    with pytest.raises(RuntimeError, match="no management for you"):
        service_main.start_in_worker(worker)
    assert every_actor() == []
    assert threads(*LOOPS) == [] and not write_checker(worker.wsgi).running
    assert worker.wsgi.extensions[GATEWAY_KEY] is None
    assert getattr(worker, "sse_service", None) is None


def test_the_stop_order_is_the_reverse_of_the_start(worker):
    service = service_main.start_in_worker(worker)
    order = [what for what, _ in service._undo]
    stopped = []
    service._undo = [(what, (lambda what=what, stop=stop: (stopped.append(what), stop())))
                     for what, stop in service._undo]
    service_main.stop_in_worker(worker)
    assert order == ["actor system", "gateway", "stuck-write checker", "shutdown watcher",
                     "management API"]
    assert stopped == list(reversed(order))


def test_when_the_worker_stops_being_alive_every_stream_is_told_to_close(worker, monkeypatch):
    closed, windows = threading.Event(), []

    def close_streams(system, over=0.0):
        windows.append(over)
        closed.set()

    monkeypatch.setattr(actor_system, "close_streams", close_streams)
    service_main.start_in_worker(worker)
    try:
        worker.alive = False
        assert closed.wait(5), "the shutdown watcher never closed the streams"
        assert windows == [worker.wsgi.config["SETTINGS"].sse_drain_seconds]   # spread out
    finally:
        service_main.stop_in_worker(worker)


def test_a_wake_makes_the_watcher_look_at_once(worker, monkeypatch):
    """SIGTERM wakes the watcher (GatewayWorker.handle_exit): the drain started up to one
    WATCH_INTERVAL late, and so ended that much after SSE_DRAIN_SECONDS."""
    closed = threading.Event()
    monkeypatch.setattr(actor_system, "close_streams", lambda system, over=0.0: closed.set())
    monkeypatch.setattr(service_main, "WATCH_INTERVAL", 60.0)
    service = service_main.start_in_worker(worker)
    try:
        worker.alive = False
        service.wake()
        assert closed.wait(5), "the watcher waited for its next look"
    finally:
        service_main.stop_in_worker(worker)


def test_serving_a_stream_starts_no_loop(worker):
    """The stuck-write checker belongs to the service: a request never starts it."""
    from actors.gateway import Gateway
    from actors.messages import Admission, Admit
    from tests.fakes import FakeRef
    app = worker.wsgi
    app.extensions[GATEWAY_KEY] = Gateway(
        app.config["SETTINGS"], broker=FakeRef(), history=FakeRef(),
        limiter=FakeRef({Admit: Admission(True)}), stopping=threading.Event())
    response = app.test_client().get("/events")
    first = next(iter(response.response))
    assert first.startswith(b"retry:")
    assert threads("stuck-writes") == [] and not write_checker(app).running
    response.close()


def test_the_start_up_says_how_subscribers_are_authenticated_and_never_a_secret(
        monkeypatch, caplog):
    import logging

    from actors.auth.subjects import parse_subject_field
    monkeypatch.setattr(actor_system, "KafkaConsumerActor", Quiet)
    monkeypatch.setattr(service_main, "_tune_gc", lambda: None)
    secret = b"a-jwt-secret-of-at-least-32-bytes!!"
    settings = Settings.defaults(grpc_port=0, auth_mode="required", auth_jwt_algorithms=("HS256",),
                                 auth_jwt_secret=secret, auth_cookie_name="sse",
                                 auth_subject_field=parse_subject_field("key"))
    worker = SimpleNamespace(wsgi=create_app(settings), alive=True)
    monkeypatch.setattr(service_main.logs, "configure", lambda settings: None)
    try:
        with caplog.at_level(logging.INFO, logger="service.main"):
            service = service_main.start_in_worker(worker)
        assert service.gateway.auth is not None
    finally:
        service_main.stop_in_worker(worker)
        stop_all()
    text = caplog.text
    assert "subscriber auth required; algorithms HS256; keys from AUTH_JWT_SECRET" in text
    assert "private events by key" in text
    assert "AUTH_TICKET_SECRET is not set" in text                      # the warning
    assert "CORS_ALLOWED_ORIGINS=*" in text                             # cookie with *
    assert secret.decode() not in text


def instance_settings(directory):
    """What gunicorn's master gives its workers: the directory with the shared limits in it."""
    from actors import shared_limits
    settings = Settings.defaults(grpc_port=0, sse_instance_dir=str(directory))
    shared_limits.create(str(directory / "limits"), settings)
    return settings


def test_with_an_instance_dir_the_worker_joins_and_the_app_answers_for_the_instance(
        monkeypatch, tmp_path):
    """One real worker plus a fake one on its socket: /stats and /health sum both, the
    worker's own socket exists while it runs and is gone once it stops."""
    import os

    from actors.instance import InstanceGateway
    from rpc.peers import PeerServer, socket_path
    from tests.fakes import FakeGateway, make_health, make_stats
    monkeypatch.setattr(actor_system, "KafkaConsumerActor", Quiet)
    monkeypatch.setattr(service_main, "_tune_gc", lambda: None)
    directory = str(tmp_path)
    other = PeerServer(FakeGateway(stats=make_stats(clients=4), health=make_health(clients=4)),
                       socket_path(directory, 999_999)).start()
    worker = SimpleNamespace(wsgi=create_app(instance_settings(tmp_path)), alive=True)
    try:
        service = service_main.start_in_worker(worker)
        assert isinstance(service.gateway, InstanceGateway)
        assert worker.wsgi.extensions[GATEWAY_KEY] is service.gateway
        assert service.gateway.local is service.local
        assert os.path.exists(socket_path(directory))
        client = worker.wsgi.test_client()
        assert client.get("/stats").get_json()["clients"] == 4      # 0 here + 4 there
        assert client.get("/health").get_json()["clients"] == 4
        assert client.get("/livez").status_code == 200
        order = [what for what, _ in service._undo]
        assert order == ["actor system", "gateway", "stuck-write checker",
                         "shutdown watcher", "instance socket", "management API"]
    finally:
        service_main.stop_in_worker(worker)
        other.stop()
        stop_all()
    assert not os.path.exists(socket_path(directory))


def test_a_stopping_worker_leaves_the_instance_once_its_streams_are_closed(monkeypatch,
                                                                          tmp_path):
    """Its streams stay open over the drain, events still flowing: until they are closed the
    other workers must be able to list and end them (GetClients, DisconnectSubject)."""
    import os

    from rpc.peers import socket_path
    monkeypatch.setattr(actor_system, "KafkaConsumerActor", Quiet)
    monkeypatch.setattr(service_main, "_tune_gc", lambda: None)
    during = []
    monkeypatch.setattr(actor_system, "close_streams",
                        lambda system, over=0.0: during.append(os.path.exists(socket_path(
                            str(tmp_path)))))
    worker = SimpleNamespace(wsgi=create_app(instance_settings(tmp_path)), alive=True)
    service_main.start_in_worker(worker)
    try:
        worker.alive = False
        deadline = threading.Event()
        for _ in range(50):
            if during and not os.path.exists(socket_path(str(tmp_path))):
                break
            deadline.wait(0.1)
        assert during == [True], "the socket was gone while the streams were still open"
        assert not os.path.exists(socket_path(str(tmp_path))), "it never left the instance"
    finally:
        service_main.stop_in_worker(worker)
        stop_all()


def test_a_stopping_worker_leaves_its_last_counts_while_its_actors_still_run(monkeypatch,
                                                                            tmp_path):
    from actors.instance import InstanceGateway
    monkeypatch.setattr(actor_system, "KafkaConsumerActor", Quiet)
    monkeypatch.setattr(service_main, "_tune_gc", lambda: None)
    kept = []
    monkeypatch.setattr(InstanceGateway, "keep_last_counts",
                        lambda self, timeout: kept.append(self.local.stopped_actors()))
    worker = SimpleNamespace(wsgi=create_app(instance_settings(tmp_path)), alive=True)
    try:
        service_main.start_in_worker(worker)
        assert kept == []
    finally:
        service_main.stop_in_worker(worker)
        stop_all()
    assert kept == [[]], "the last counts were not kept, or kept after the actors stopped"
