"""rpc/gevent_mode.py: a gRPC call to a busy worker is answered ahead of the hub's backlog.

The server runs in a gevent-patched interpreter; a plain client process makes one call per
round, and the server queues 3,000 callbacks of 0.2 ms each (0.6 s of work, as a reconnect
storm's opening streams do) the moment it asks for that call. With grpcio's own gevent mode
the call waits behind the backlog; with the prompt pool and executor it does not."""
import subprocess
import sys
import textwrap

CLIENT = """
import sys, time, grpc
channel = grpc.insecure_channel(f"127.0.0.1:{int(sys.stdin.readline())}")
ping = channel.unary_unary("/test.Echo/Ping")
ping(b"warm", timeout=10)
print("ready", flush=True)
for line in sys.stdin:
    started = time.perf_counter()
    assert ping(b"x", timeout=10) == b"x"
    print(f"{time.perf_counter() - started:.4f}", flush=True)
"""

SERVER = """
from gevent import monkey; monkey.patch_all()
import statistics, subprocess, sys, time
# the clients first: a process running gRPC should not fork
clients = [subprocess.Popen([sys.executable, "-c", CLIENT], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True) for _ in range(2)]
from concurrent import futures
import gevent, grpc
from gevent import get_hub
from grpc._cython import cygrpc
from rpc import gevent_mode

assert gevent_mode.init_gevent()
hub = get_hub()
prompt_pool = cygrpc.g_gevent_threadpool
assert isinstance(prompt_pool, gevent_mode.PromptPool)

def busy():
    end = time.perf_counter() + 0.0002
    while time.perf_counter() < end:
        pass

handler = grpc.method_handlers_generic_handler(
    "test.Echo", {"Ping": grpc.unary_unary_rpc_method_handler(lambda request, context: request)})

def rounds(client, pool, executor, n=3):
    cygrpc.g_gevent_threadpool = pool
    server = grpc.server(executor)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    client.stdin.write(f"{port}\\n")
    client.stdin.flush()
    assert client.stdout.readline().strip() == "ready"
    took = []
    for _ in range(n):
        client.stdin.write("go\\n")
        client.stdin.flush()
        for _ in range(3000):
            hub.loop.run_callback(busy)
        took.append(float(client.stdout.readline()))
        gevent.sleep(0.8)           # the backlog runs out before the next round
    client.stdin.close()
    client.wait(10)
    server.stop(None)
    return statistics.median(took)

plain = rounds(clients[0], prompt_pool._pool, futures.ThreadPoolExecutor(4))
prompt = rounds(clients[1], prompt_pool, gevent_mode.executor(4))
print(f"{prompt:.3f} {plain:.3f}")
assert prompt < 0.2 and plain > 0.4, (prompt, plain)
"""


def test_a_call_is_answered_ahead_of_the_hubs_backlog_where_grpcios_gevent_mode_is_not():
    script = f"CLIENT = {CLIENT!r}\n" + textwrap.dedent(SERVER)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True,
                          text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    prompt, plain = map(float, done.stdout.split())
    assert prompt < plain


def test_outside_gevent_the_server_keeps_grpcios_threads():
    from concurrent import futures

    from rpc import gevent_mode
    assert gevent_mode.init_gevent() is False
    pool = gevent_mode.executor(2)
    try:
        assert isinstance(pool, futures.ThreadPoolExecutor)
        assert pool.submit(lambda: 41 + 1).result(timeout=5) == 42
    finally:
        pool.shutdown()


def test_a_grpcio_without_the_parts_replaced_keeps_its_own_gevent_mode(caplog):
    from grpc import _server
    from grpc._cython import cygrpc

    from rpc import gevent_mode
    before = _server.threading
    assert cygrpc.g_gevent_threadpool is None       # no gevent mode in this process: no pool
    gevent_mode._quicken(hub=None)
    assert _server.threading is before and cygrpc.g_gevent_threadpool is None
    assert "lacks the parts rpc/gevent_mode.py replaces" in caplog.text


def test_the_prompt_executor_keeps_the_executor_contract_on_shutdown():
    """shutdown(wait=True) returns once the running handlers have ended; submit after it
    raises RuntimeError (concurrent.futures.Executor's contract; grpcio does not call it)."""
    script = textwrap.dedent("""
        from gevent import monkey; monkey.patch_all()
        import time
        import gevent
        from rpc import gevent_mode
        assert gevent_mode.init_gevent()
        executor = gevent_mode.executor(2)
        running = executor.submit(gevent.sleep, 0.3)
        queued = [executor.submit(gevent.sleep, 0.1) for _ in range(3)]
        started = time.perf_counter()
        executor.shutdown(wait=True)
        took = time.perf_counter() - started
        assert running.done() and all(f.done() for f in queued), (running, queued)
        assert took >= 0.25, took
        try:
            executor.submit(lambda: 1)
        except RuntimeError:
            pass
        else:
            raise AssertionError("submit after shutdown was accepted")
        cancelled = gevent_mode.executor(1)
        first = cancelled.submit(gevent.sleep, 0.1)
        later = cancelled.submit(gevent.sleep, 0.1)
        cancelled.shutdown(wait=True, cancel_futures=True)
        assert first.done() and not first.cancelled() and later.cancelled()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
