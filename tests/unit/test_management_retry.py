"""rpc.server.Management: a busy gRPC port is retried until free (a SIGHUP's new worker)."""
import logging
import socket
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from actors.settings import Settings
from rpc.server import Management, start_management
from tests.fakes import FakeGateway, make_health
from tests.harness import free_port


def make_system():
    return FakeGateway(health=make_health())


def serving(port) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def holder(port) -> socket.socket:
    """Another process's listener on the port (no SO_REUSEPORT: gRPC cannot share it)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_a_busy_port_is_retried_and_the_api_answers_once_it_is_free(caplog):
    port = free_port()
    settings = Settings.defaults(grpc_host="127.0.0.1", grpc_port=port, grpc_auth_token="t")
    busy = holder(port)
    with caplog.at_level(logging.INFO, logger="rpc.server"):
        management = start_management(settings, make_system())
        try:
            assert management.server is None
            assert any(r.levelno == logging.WARNING and "retrying until it is free" in
                       r.getMessage() for r in caplog.records)
            time.sleep(0.5)
            assert management.server is None              # still busy: still retrying
            busy.close()
            freed = time.monotonic()
            while management.server is None and time.monotonic() - freed < 5:
                time.sleep(0.02)
            assert management.server is not None, "never bound after the port was freed"
            assert time.monotonic() - freed < 2.0
            assert serving(port)
        finally:
            management.stop(None)
    assert any("after" in r.getMessage() and "retries" in r.getMessage() for r in caplog.records)


def test_stop_ends_the_retrying_and_nothing_binds_afterwards():
    port = free_port()
    settings = Settings.defaults(grpc_host="127.0.0.1", grpc_port=port, grpc_auth_token="t")
    busy = holder(port)
    management = Management(settings, make_system()).start()
    management.stop(None)
    management.stop(None)                                 # idempotent
    busy.close()
    time.sleep(Management.RETRY_SECONDS * 3)
    assert management.server is None
    assert not serving(port)
    assert not any(t.name == "grpc-bind-retry" for t in threading.enumerate())


def test_a_free_port_is_bound_at_once_and_port_zero_turns_it_off():
    settings = Settings.defaults(grpc_host="127.0.0.1", grpc_port=free_port(), grpc_auth_token="t")
    management = start_management(settings, make_system())
    try:
        assert management.server is not None and serving(settings.grpc_port)
    finally:
        management.stop(None)
    assert management.server is None
    off = start_management(Settings.defaults(grpc_port=0), make_system())
    assert off.server is None


@pytest.mark.parametrize("standby", [True, False])
@pytest.mark.parametrize("host, says", [("", "GRPC_HOST is empty"),
                                        ("192.0.2.1", "GRPC_HOST='192.0.2.1'")])
def test_an_address_grpc_cannot_listen_on_is_an_error_not_a_busy_port(caplog, standby, host,
                                                                      says):
    """GRPC_HOST= (empty) passes the master's check (Python binds "" to every address) but
    not gRPC's: the management API never started, a standby worker said the port was
    "taken by another worker" and retried quietly every 0.5 s for ever."""
    settings = Settings.defaults(grpc_host=host, grpc_port=free_port())
    with caplog.at_level(logging.INFO, logger="rpc.server"):
        management = start_management(settings, make_system(), standby=standby)
        try:
            time.sleep(1.0)
        finally:
            management.stop(None)
    assert management.server is None
    said = [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "taken" in m or "until it is free" in m], said
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and says in errors[0], said


def test_workers_starting_together_check_and_bind_the_port_one_at_a_time(tmp_path,
                                                                        monkeypatch):
    """Every worker of an instance tries the port at start, as a standby: each checks that
    it is free, then binds. Two workers starting together both found it free, and the
    second's bind failed inside gRPC, which wrote its own line to stderr (`E1202 ...
    add_port.cc:83] Failed to add port to server ... Address already in use`; 1 start in 6
    here, 2 of 3 runs of `make run`): not JSON under LOG_FORMAT=json, an error on the first
    screen of the demo. Now the check and the bind are one step among the instance's workers
    (a lock in the instance directory): a worker whose turn comes after the other bound
    finds the port taken and stands by without asking gRPC."""
    import fcntl
    import os

    import rpc.server
    port = free_port()
    settings = Settings.defaults(grpc_host="127.0.0.1", grpc_port=port)
    lock = tmp_path / "grpc-bind.lock"
    binds = []
    real_start = rpc.server.start_server
    monkeypatch.setattr(rpc.server, "start_server",
                        lambda *a, **k: binds.append(1) or real_start(*a, **k))
    other = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(other, fcntl.LOCK_EX)          # the other worker is binding the port
    management = Management(settings, make_system(), standby=True, bind_lock=str(lock))
    starting = threading.Thread(target=management.start)
    try:
        starting.start()
        time.sleep(0.3)
        taken = holder(port)                    # ... and has bound it
        os.close(other)
        starting.join(5)
        assert not starting.is_alive()
        assert management.server is None and binds == []    # stood by without a bind
        taken.close()
        freed = time.monotonic()
        while management.server is None and time.monotonic() - freed < 5:
            time.sleep(0.02)
        assert management.server is not None and binds == [1]   # took it over once free
    finally:
        management.stop(None)
