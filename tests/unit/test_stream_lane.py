"""The whole lane under gevent, on a real socket: a broker greenlet offering to an Outbox (with
yields between offers), StreamBody writing what the socket leaves, and a reader taking the
bytes at random speeds through a small socket buffer, until the stream is closed with a final
frame. Whatever the interleaving, the reader gets one well-formed chunked body: the opening,
every accepted frame once and in order, the final frame, the last chunk."""
import subprocess
import sys
from pathlib import Path

SEEDS = 20

UNDER_GEVENT = r'''
from gevent import monkey; monkey.patch_all()
import random, socket, sys
from types import SimpleNamespace
import gevent
from actors.filters import Filter
from actors.gateway import Lease, Stream
from actors.outbox import Outbox
from web.stream import StreamBody


def chunk(data):
    return b"%X\r\n%b\r\n" % (len(data), data) if data else b""


def unchunk(wire):
    out, at = bytearray(), 0
    while True:
        end = wire.index(b"\r\n", at)
        size = int(wire[at:end], 16)
        if size == 0:
            assert wire[end:] == b"\r\n\r\n", wire[end:end + 20]
            return bytes(out)
        out += wire[end + 2:end + 2 + size]
        assert wire[end + 2 + size:end + 4 + size] == b"\r\n"
        at = end + 4 + size


class Client:
    def stop(self, block=True):
        pass


def run(seed):
    rng = random.Random(seed)
    server, reader = socket.socketpair()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    info = SimpleNamespace(id=f"c{seed}", remote_addr="10.0.0.1", filter=Filter(), subject=None)
    outbox = Outbox(capacity=10**6, max_bytes=10**9)
    stream = Stream(info, outbox, Client(), None, Lease(None, "10.0.0.1"))
    environ = {"gunicorn.socket": server, "wsgi.url_scheme": "http",
               "SERVER_PROTOCOL": "HTTP/1.1"}
    body = StreamBody(stream, b"retry: 1000\n", environ, None)
    body.first_write = lambda data: server.sendall(chunk(data))
    accepted = []

    def serve():                    # gunicorn's part: iterate, frame, end, close
        for item in body:
            server.sendall(chunk(item))
        server.sendall(b"0\r\n\r\n")
        body.close()
        server.close()

    def broker():
        gevent.sleep(0)
        for n in range(rng.randint(1, 300)):
            frames = b"data: %d %s\n\n" % (n, b"x" * rng.choice([0, 10, 500, 5000]))
            if rng.random() < 0.1:
                outbox.push_control(b": heartbeat\n")
                accepted.append(b": heartbeat\n")
            if outbox.offer(frames, 1, f"id-{n}"):
                accepted.append(frames)
            if rng.random() < 0.3:
                gevent.sleep(rng.choice([0, 0, 0.001]))
        outbox.close("bye", b": closing: bye\n")
        accepted.append(b": closing: bye\n")

    got = bytearray()

    def read():
        while True:
            data = reader.recv(rng.choice([1, 7, 100, 4096, 65536]))
            if not data:
                return
            got.extend(data)
            if rng.random() < 0.2:
                gevent.sleep(rng.choice([0, 0.001]))

    jobs = [gevent.spawn(serve), gevent.spawn(broker), gevent.spawn(read)]
    gevent.joinall(jobs, timeout=30, raise_error=True)
    assert all(job.dead for job in jobs), seed
    reader.close()
    payload = unchunk(bytes(got))
    opening = b"retry: 1000\n: client c%d\n" % seed
    assert payload == opening + b"".join(accepted), (seed, len(payload))
    assert outbox.sent == sum(1 for a in accepted if a.startswith(b"data")), seed
    assert body.reason == "bye" and outbox.finished, seed


for seed in range(int(sys.argv[1]), int(sys.argv[2])):
    run(seed)
print("ok")
'''


def test_every_accepted_frame_reaches_a_reader_of_any_speed_once_in_order_then_the_end():
    done = subprocess.run([sys.executable, "-c", UNDER_GEVENT, "0", str(SEEDS)],
                          capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ok"]
