"""Go services as clients, end to end (real Kafka, real gunicorn): Go's SSE libraries
r3labs/sse (v2, the most used) and tmaxmax/go-sse, set as the README tells Go users, read
every event exactly once: the history, an event near SSE_MAX_EVENT_BYTES, and what came while
the operator ended their streams twice. The client is tests/go_clients (built by
scripts/install-go-clients into .cache/bin)."""
import json
import os
import shutil
import subprocess
import threading
from collections import Counter
from pathlib import Path

import grpc
import pytest

from rpc import sse_pb2 as pb, sse_pb2_grpc
from tests.harness import eventually, free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / ".cache" / "bin" / "sse-go-client"
MAX_EVENT_BYTES = 262144                # the gateway's default SSE_MAX_EVENT_BYTES
BUFFER = MAX_EVENT_BYTES + 2048         # the README: the limit, the longest type and 1 KB
LARGE = 200_000                         # bytes of data in one event: over the 64 KB default


@pytest.fixture(scope="module")
def go_client():
    if shutil.which("go"):
        subprocess.run([str(ROOT / "scripts" / "install-go-clients")], check=False, timeout=900)
    if not CLIENT.exists():
        if shutil.which("go") or os.environ.get("CI") == "true":
            pytest.fail("scripts/install-go-clients did not build .cache/bin/sse-go-client")
        pytest.skip("no Go toolchain to build the Go client with (scripts/install-go-clients)")
    return CLIENT


class GoClient:
    """The client's process and the JSON lines it printed so far, read as they come."""

    def __init__(self, binary: Path, lib: str, url: str, events: int):
        self.proc = subprocess.Popen(
            [str(binary), "-lib", lib, "-url", url, "-events", str(events), "-seconds", "60",
             "-buffer", str(BUFFER), "-again", "300"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[dict] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def ids(self) -> list[str]:
        return [json.loads(m["data"])["id"] for m in self.lines if m.get("data")]

    def notes(self) -> list[str]:
        return [m["note"] for m in self.lines if "note" in m]

    def finish(self) -> int:
        try:
            code = self.proc.wait(timeout=70)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the Go client never ended: {self.notes()}") from None
        self.reader.join(timeout=5)
        return code


def _event(n: int, size: int = 0) -> dict:
    return {"id": f"e{n}", "type": "order.created", "source": "go", "data": {"pad": "x" * size}}


def _only_client(stub, client: GoClient, other_than: str = "") -> str:
    found = []

    def listed():
        found[:] = [c.id for c in stub.GetClients(pb.GetClientsRequest(), timeout=5).clients
                    if c.id != other_than]
        return len(found) == 1
    assert eventually(listed, timeout=15), (
        f"clients {found}, not one new one; the Go client had {client.ids()}")
    return found[0]


def _cut_twice(client: GoClient, svc, produce) -> None:
    """Events 11-20 (15 a large one) while it reads, then twice: its stream ended by the
    operator and 14 events produced while it is away."""
    with grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as channel:
        stub = sse_pb2_grpc.SSEManagementServiceStub(channel)
        ended = _only_client(stub, client)
        produce(range(11, 21), large={15})
        assert eventually(lambda: len(client.ids()) >= 20, timeout=15), client.lines[-3:]
        stub.DisconnectClient(pb.DisconnectClientRequest(client_id=ended), timeout=5)
        produce(range(21, 35))
        ended = _only_client(stub, client, other_than=ended)
        stub.DisconnectClient(pb.DisconnectClientRequest(client_id=ended), timeout=5)
        produce(range(35, 49))          # the client then exits once it has them all


@pytest.mark.parametrize("lib", ["r3labs", "go-sse"])
def test_a_go_service_reads_every_event_once_across_a_large_event_and_ended_streams(
        lib, go_client, topics, service, producer):
    topic = topics("go")["go"]
    svc = service([topic], expect_partitions=3, GRPC_PORT=free_port(), SSE_RETRY_MS=300)

    def produce(numbers, large=()):
        for n in numbers:
            producer(topic, _event(n, LARGE if n in large else 0), partition=n % 3)
        producer.flush()

    produce(range(1, 11))                                       # the history
    client = GoClient(go_client, lib, f"{svc.url}/events", events=48)
    try:
        _cut_twice(client, svc, produce)
        code = client.finish()
    finally:
        client.proc.kill()
    ids = client.ids()
    assert code == 0, (client.notes(), client.proc.stderr.read()[-2000:], svc.log_tail(10))
    assert Counter(ids) == Counter(f"e{n}" for n in range(1, 49)), ids
    large = [m for m in client.lines if m.get("data") and json.loads(m["data"])["id"] == "e15"]
    assert len(json.loads(large[0]["data"])["data"]["pad"]) == LARGE
    # the README: these libraries hand over id blocks as messages without data; their id counts
    empty = [m for m in client.lines if "note" not in m and not m["data"]]
    assert empty and all(m["id"] for m in empty), empty
    # connected again twice, because the stream ended: never for an error (the large event)
    assert [n.split(":")[0] for n in client.notes()] == ["stream ended"] * 2, client.notes()
