"""SIGTERM ends the streams over SSE_DRAIN_SECONDS in every worker, and each stream advises its
own retry."""
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
