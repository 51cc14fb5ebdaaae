"""SIGTERM ends the streams over SSE_DRAIN_SECONDS in every worker, and each stream advises its
own retry."""
import os
import signal
import threading
import time

import pytest

from tests.sse import SSEClient

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("workers", [1, 2])
def test_streams_end_spread_over_the_drain_window_with_jittered_retries(topics, service, workers):
    topic = topics("drain")["drain"]
    svc = service([topic], expect_partitions=3, SSE_DRAIN_SECONDS=2, SSE_MAX_CLIENTS_PER_IP=100,
                  WORKERS=workers)
    clients = [SSEClient(f"{svc.url}/events?history=false", timeout=20) for _ in range(40)]
    for client in clients:
        client.read_until(lambda evs, c=client: c.parser.retry is not None, timeout=10)
    retries = {c.parser.retry for c in clients}
    assert all(3000 <= r <= 3750 for r in retries) and len(retries) > 10

    ended = {}

    def wait(i, client):
        client.read_until(lambda evs: False, timeout=15)
        ended[i] = time.monotonic()

    threads = [threading.Thread(target=wait, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    took = svc.stop()
    for t in threads:
        t.join()
    assert len(ended) == 40
    assert all("closing: server shutting down" in c.parser.comments for c in clients)
    spread = max(ended.values()) - min(ended.values())
    assert spread >= 1.0, f"all streams ended within {spread:.2f} s"
    assert took < 8, f"shutdown took {took:.1f} s"


def _workers(svc) -> list[int]:
    pid = svc.process.pid
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        return [int(p) for p in children.read().split()]


def test_a_stopping_worker_takes_no_new_request_it_would_not_answer(topics, service):
    """SIGTERM to one worker of two (as a reload does): it stops accepting at once, so every
    request meanwhile is answered (by the other worker), none closed unanswered."""
    import http.client
    topic = topics("handover")["handover"]
    svc = service([topic], expect_partitions=3, WORKERS=2, SSE_DRAIN_SECONDS=3)
    held = SSEClient(f"{svc.url}/events?history=false", timeout=20)   # keeps a worker draining
    held.read_until(lambda evs: held.parser.retry is not None, timeout=10)
    os.kill(_workers(svc)[0], signal.SIGTERM)
    answered, failed = 0, []
    until = time.monotonic() + 2.0
    while time.monotonic() < until:
        conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=5)
        try:
            conn.request("GET", "/livez")
            answered += conn.getresponse().status == 200
        except OSError as exc:
            failed.append(type(exc).__name__)
        except http.client.HTTPException as exc:
            failed.append(type(exc).__name__)
        finally:
            conn.close()
    held.close()
    assert not failed, f"{len(failed)} of {len(failed) + answered} requests unanswered: {failed[:5]}"
    assert answered > 50


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stopping_instance_refuses_new_connections_rather_than_dropping_them(topics, service,
                                                                               workers):
    """SIGTERM to gunicorn (an instance's stop in a rolling deploy): from then on a connection
    is answered or refused. One the kernel took into the listen queue of a socket no worker
    accepts from any more is reset when the socket closes, after its request went out: a
    balancer that moves a refused connection to the next instance cannot do that for it."""
    import socket
    topic = topics("stopping")["stopping"]
    svc = service([topic], expect_partitions=3, WORKERS=workers, SSE_DRAIN_SECONDS=1)
    held = SSEClient(f"{svc.url}/events?history=false", timeout=20)   # keeps a worker draining
    held.read_until(lambda evs: held.parser.retry is not None, timeout=10)
    svc.process.send_signal(signal.SIGTERM)
    outcomes, sent = [], []     # a connection every 20 ms until gunicorn is gone, read after
    while svc.process.poll() is None:
        try:
            conn = socket.create_connection(("127.0.0.1", svc.port), timeout=5)
            conn.sendall(b"GET /livez HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
            sent.append(conn)
        except (ConnectionRefusedError, ConnectionResetError):   # nothing went out
            outcomes.append("refused")
        time.sleep(0.02)
    for conn in sent:
        with conn:
            try:
                outcomes.append("answered" if conn.recv(12).startswith(b"HTTP/1.1 ") else
                                "closed unanswered")
            except OSError as exc:
                outcomes.append(type(exc).__name__)
    held.close()
    svc.stop()
    dropped = [o for o in outcomes if o not in ("answered", "refused")]
    # at most the one the kernel queued in the instant the last worker closed the socket
    assert len(dropped) <= 1, (f"{len(dropped)} of {len(outcomes)} connections accepted and "
                               f"dropped: {dropped[:5]}")
    assert "refused" in outcomes
