"""Probes (/livez, /readyz), the admin listener's routing, and gunicorn's settings and hooks."""
import fcntl
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from actors import shared_limits as real_shared_limits
from actors.broker import BrokerActor
from actors.gateway import STOPPING, Unavailable
from actors.replies import combine_health
from actors.settings import Settings, SettingsError
from tests.fakes import FakeGateway, FakeRef, make_health
from tests.harness import free_port
from tests.unit.test_auth_redact import JWT
from web import create_app, instance_dir, serve


def _health(state="connected", warm=True, partitions=(("t", 0),)):
    return make_health(state, warm, partitions)


def _client(health=None, settings=None, consumer_alive=True, stopping=False):
    stats = BrokerActor(history=FakeRef())._stats()      # the real figures /metrics renders
    gateway = FakeGateway(stats=stats, health=health or _health(),
                          stopped=() if consumer_alive else ("consumer",),
                          error=Unavailable(STOPPING) if stopping else None)
    settings = settings or Settings.defaults(rate_limit_enabled=False)
    return create_app(settings, gateway=gateway).test_client()


def test_readyz_is_200_when_kafka_is_connected_and_warm():
    response = _client().get("/readyz")
    assert response.status_code == 200 and response.json == {"status": "ready"}
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("health, words", [
    (_health(state="disconnected"), "kafka is disconnected (refused)"),
    (_health(warm=False), "warm start"),
    (_health(partitions=()), "KAFKA_TOPICS"),
    (combine_health([_health()], ["worker 12 did not answer (no answer within 1.0 s)"]),
     "worker 12 did not answer"),
])
def test_readyz_is_503_with_the_reason(health, words):
    response = _client(health).get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "not_ready" and words in response.json["reason"]


@pytest.mark.parametrize("health", [
    _health(), _health(state="disconnected"), _health(warm=False), _health(partitions=()),
    _health(state="unauthorized", warm=False, partitions=()),
    combine_health([_health()], ["worker 12 did not answer (no answer within 1.0 s)"]),
])
def test_grpc_health_is_serving_exactly_when_readyz_is_200(health):
    from rpc.health import SERVING, KafkaHealth
    ready = _client(health).get("/readyz").status_code == 200
    gateway = FakeGateway(health=health)
    assert (KafkaHealth(gateway).refresh() == SERVING) is ready


def test_livez_ignores_kafka_but_not_a_dead_actor_or_a_stopping_system():
    assert _client(_health(state="disconnected")).get("/livez").status_code == 200
    dead = _client(consumer_alive=False).get("/livez")
    assert dead.status_code == 503 and "consumer" in dead.json["reason"]
    assert _client(stopping=True).get("/livez").status_code == 503
    assert _client(stopping=True).get("/readyz").status_code == 503


def test_probes_without_an_actor_system_are_503_json():
    app = create_app(Settings.defaults(), gateway=None).test_client()
    for path in ("/livez", "/readyz"):
        response = app.get(path)
        assert response.status_code == 503 and response.json["reason"]


ADMIN = Settings.defaults(rate_limit_enabled=False, admin_port=9184)


def _on(client, path, port):
    return client.get(path, environ_overrides={"SERVER_PORT": str(port)})


def test_admin_port_serves_only_the_admin_paths():
    client = _client(settings=ADMIN)
    for path in ("/metrics", "/stats", "/livez", "/readyz", "/health"):
        assert _on(client, path, 9184).status_code == 200, path
    for path in ("/events", "/"):
        assert _on(client, path, 9184).status_code == 404, path


def test_with_an_admin_port_kafkas_details_leave_the_public_port():
    """Broker addresses, Kafka's error text and certificate paths were in every visitor's
    /health and /readyz (an HTTP audit found them)."""
    detail = "bootstrap kafka-internal-1.corp.example:9092,10.20.30.40:9093"
    client = _client(settings=ADMIN, health=make_health("connecting", detail=detail))
    public, admin = _on(client, "/health", 8084), _on(client, "/health", 9184)
    assert public.status_code == admin.status_code == 503
    assert public.json["kafka"]["detail"] == "" and public.json["kafka"]["state"] == "connecting"
    assert admin.json["kafka"]["detail"] == detail
    public, admin = _on(client, "/readyz", 8084), _on(client, "/readyz", 9184)
    assert public.status_code == admin.status_code == 503
    assert "10.20.30.40" not in public.get_data(as_text=True)
    assert "10.20.30.40" in admin.json["reason"]
    assert _on(_client(health=make_health("connecting", detail=detail)), "/health",
               8084).json["kafka"]["detail"] == detail          # one port: it is all there


def test_public_port_loses_metrics_and_stats_when_the_admin_port_is_on():
    client = _client(settings=ADMIN)
    for path in ("/metrics", "/stats"):
        response = _on(client, path, 8084)
        assert response.status_code == 404 and "ADMIN_PORT" in response.json["message"]
        # the Host header does not choose the listener
        assert client.get(path, headers={"Host": "127.0.0.1:9184"},
                          environ_overrides={"SERVER_PORT": "8084"}).status_code == 404
    assert _on(client, "/readyz", 8084).status_code == 200
    assert _on(client, "/health", 8084).status_code == 200


def test_without_the_admin_port_the_public_port_serves_everything():
    client = _client()
    for path in ("/metrics", "/stats", "/livez", "/readyz", "/health"):
        assert _on(client, path, 8084).status_code == 200, path


def test_admin_port_must_differ_from_the_http_port():
    with pytest.raises(SettingsError, match="ADMIN_PORT=8084 is HTTP_PORT too"):
        Settings.from_env({"ADMIN_PORT": "8084"}, env_file=None)


def test_gunicorn_config_binds_the_admin_address_when_set():
    config = serve.gunicorn_config(Settings.defaults(admin_port=9184, admin_host="10.0.0.5"))
    assert config["bind"] == ["0.0.0.0:8084", "10.0.0.5:9184"]
    assert config["worker_class"] == "web.worker.GatewayWorker"
    assert serve.gunicorn_config(Settings.defaults())["bind"] == ["0.0.0.0:8084"]


def test_a_worker_has_its_drain_and_then_time_to_close_kafka_before_it_is_killed():
    """graceful_timeout was 10 s whatever SSE_DRAIN_SECONDS: with an 8 s drain and Kafka down
    (its consumer takes ~5 s to close) gunicorn killed the worker."""
    for drain in (0, 1, 8):
        config = serve.gunicorn_config(Settings.defaults(sse_drain_seconds=drain))
        assert config["graceful_timeout"] == drain + 10


def test_ipv6_addresses_are_bound_in_brackets_as_gunicorn_reads_them():
    """HTTP_HOST=:: (dual stack) made gunicorn exit: "'' is not a valid port number"."""
    from gunicorn.util import parse_address
    settings = Settings.defaults(http_host="::", admin_host="::1", admin_port=9184)
    binds = serve.gunicorn_config(settings)["bind"]
    assert binds == ["[::]:8084", "[::1]:9184"]
    assert [parse_address(b) for b in binds] == [("::", 8084), ("::1", 9184)]
    named = Settings.defaults(http_host="[::]", admin_host="gateway.internal", admin_port=9184)
    assert serve.bind_addresses(named) == ["[::]:8084", "gateway.internal:9184"]
    assert serve.hooks_applied()


def _gunicorn_environ(raw: bytes, peer) -> dict:
    """The WSGI environ gunicorn builds for `raw` from `peer`, with the gateway's settings."""
    from gunicorn.config import Config
    from gunicorn.http.message import Request
    from gunicorn.http.unreader import IterUnreader
    from gunicorn.http.wsgi import create
    cfg = Config()
    for key, value in serve.gunicorn_config(Settings.defaults()).items():
        if key in cfg.settings:
            cfg.set(key, value)
    sock = SimpleNamespace(send=len, sendall=lambda data: None)
    return create(Request(cfg, IterUnreader([raw]), peer), sock, peer, ("0.0.0.0", 8084), cfg)[1]


@pytest.mark.parametrize("peer", [("127.0.0.1", 40000), ("::1", 40000, 0, 0), ("10.0.0.5", 1)])
def test_a_clients_script_name_header_moves_no_route_and_makes_no_500(peer):
    """gunicorn takes SCRIPT_NAME and PATH_INFO headers from its forwarded_allow_ips (loopback by
    default): behind a same-host or sidecar proxy that passes them (Envoy does), any client's
    `SCRIPT_NAME: /x` served /x/events, and one the path did not start with was a 500."""
    for path, script_name in (("/livez", "/elsewhere"), ("/x/events", "/x")):
        raw = f"GET {path} HTTP/1.1\r\nHost: gw\r\nSCRIPT_NAME: {script_name}\r\n\r\n"
        environ = _gunicorn_environ(raw.encode(), peer)
        assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("", path)


def test_gunicorn_conf_py_applies_the_same_config():
    namespace = {}
    source = Path(__file__).parents[2] / "gunicorn.conf.py"
    exec(compile(source.read_text(), str(source), "exec"), namespace)
    expected = serve.gunicorn_config()
    for key, value in expected.items():
        assert namespace[key] == value, key


# -- workers and the instance directory they share ---------------------------------------------

def test_the_console_script_applies_every_setting_on_this_gunicorn():
    """`kafka-sse-gateway` sets each key with gunicorn's Config.set, which refuses a name that
    gunicorn does not know (a config file's unknown names are skipped instead): on gunicorn
    23.0, setup.cfg's floor then, the command exited 1 with 'Error: No configuration setting
    for: control_socket_disable' (a setting of gunicorn 25.1) before binding anything."""
    from web.cli import GunicornRunner
    runner = GunicornRunner(Settings.defaults())
    assert set(serve.gunicorn_config(Settings.defaults())) <= set(runner.cfg.settings)
    assert runner.cfg.worker_class_str == serve.WORKER_CLASS and runner.cfg.keepalive == 0


def test_gunicorn_runs_workers_workers_each_with_room_for_every_stream():
    config = serve.gunicorn_config(Settings.defaults(workers=3, sse_max_clients=5000))
    assert config["workers"] == 3
    assert config["worker_connections"] == 5200     # per worker: one may hold them all
    assert "nworkers_changed" in config      # TTIN / TTOU change the count freely up to a cap
    assert {"on_starting", "child_exit", "on_exit"} <= set(config)


class FakeSharedLimits:
    LIMITS_FILE = "limits"

    def __init__(self):
        self.created = []

    def create(self, path, settings, evicted=0):
        self.created.append((path, settings))
        with open(path, "wb") as file:
            file.write(b"limits")

    def evicted_in(self, path):
        return 0

    def size(self, settings):
        return len(b"limits")

    def fits(self, path, settings):
        return os.path.exists(path)


@pytest.fixture
def master(monkeypatch):
    """A master's view: its environment, a temp dir for /dev/shm (short: the workers' socket
    paths must fit), a fake shared_limits."""
    tmp_path = Path(tempfile.mkdtemp(prefix="shm-", dir="/tmp"))
    monkeypatch.delenv("SSE_INSTANCE_DIR", raising=False)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setattr(instance_dir, "shared_memory", lambda: str(tmp_path))
    limits = FakeSharedLimits()
    monkeypatch.setitem(sys.modules, "actors.shared_limits", limits)
    monkeypatch.delenv("GUNICORN_FD", raising=False)
    monkeypatch.delenv("LISTEN_FDS", raising=False)
    monkeypatch.delenv("GRPC_VERBOSITY", raising=False)     # on_starting sets it: undone after
    settings = Settings.defaults(workers=2, http_host="127.0.0.1", http_port=free_port(),
                                 grpc_port=free_port())
    serve.gunicorn_config(settings)
    logged = []
    server = SimpleNamespace(cfg=SimpleNamespace(workers=2),
                             log=SimpleNamespace(info=lambda *args: logged.append(args),
                                                 warning=lambda *args: logged.append(args),
                                                 error=lambda *args: logged.append(args)),
                             logged=logged)
    yield SimpleNamespace(server=server, limits=limits, settings=settings, parent=tmp_path)
    serve.on_exit(server)
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_on_starting_makes_the_private_instance_dir_and_the_shared_limits(master):
    serve.on_starting(master.server)
    path = os.environ["SSE_INSTANCE_DIR"]
    assert os.path.dirname(path) == str(master.parent)
    assert os.path.basename(path).startswith(f"kafka-sse-{os.getpid()}-")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == os.path.join(path, "metrics")
    assert all(os.path.isdir(os.path.join(path, sub)) for sub in ("metrics", "peers"))
    assert master.limits.created == [(os.path.join(path, "limits"), master.settings)]
    assert Settings.from_env(env_file=None).sse_instance_dir == path   # what a worker reads


def test_with_auth_on_the_master_makes_the_shared_ticket_nonces_and_counts_their_room(
        master, monkeypatch):
    """Review of 84d8872: the first worker made the 6 MiB nonce table, so a /dev/shm with room
    for the limits but not for it stopped gunicorn at a worker's boot (ENOSPC), and the table
    ate the room kept for the workers' metrics files."""
    from actors.auth import shared_nonces
    authed = replace(master.settings, auth_mode="required")
    assert instance_dir.instance_room(authed, 2) == \
        instance_dir.instance_room(master.settings, 2) + shared_nonces.SIZE
    monkeypatch.setattr(serve, "_settings", authed)
    serve.on_starting(master.server)
    made = os.path.join(os.environ["SSE_INSTANCE_DIR"], shared_nonces.NONCES_FILE)
    assert os.path.getsize(made) == shared_nonces.SIZE
    assert os.stat(made).st_blocks * 512 >= shared_nonces.SIZE          # allocated: not sparse


def test_without_auth_there_is_no_nonce_table(master):
    serve.on_starting(master.server)
    assert "nonces" not in os.listdir(os.environ["SSE_INSTANCE_DIR"])


def test_on_exit_removes_the_instance_dir_and_its_variables(master):
    serve.on_starting(master.server)
    path = os.environ["SSE_INSTANCE_DIR"]
    serve.on_exit(master.server)
    assert not os.path.exists(path)
    assert "SSE_INSTANCE_DIR" not in os.environ and "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_a_master_that_fails_after_on_starting_still_removes_the_dir_its_workers_do_not(
        master, monkeypatch):
    registered = []
    monkeypatch.setattr(serve.atexit, "register", lambda *args: registered.append(args))
    serve.on_starting(master.server)
    [(remove, pid, path)] = registered
    remove(pid + 1, path)            # a worker exiting: it inherited the master's atexit list
    assert os.path.isdir(path)
    remove(pid, path)
    assert not os.path.exists(path)


def _instance_dir(parent, name, locked=None):
    """A directory as a master makes it; `locked`: hold its lock (as a running master and its
    workers do) through a file descriptor of its own, returned."""
    path = parent / name
    path.mkdir()
    (path / "peers").mkdir()
    (path / "metrics").mkdir()
    (path / instance_dir.OWNER_LOCK).write_text("")
    if locked:
        fd = os.open(path / instance_dir.OWNER_LOCK, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return path, fd
    return path, None


def test_an_instance_dir_is_removed_only_when_no_process_holds_its_lock(master):
    """Liveness went by the name's pid: a master in another pid namespace (a container
    sharing /dev/shm) had its live directory removed under it (/metrics 500, the next worker
    unable to boot), and one whose master was pid 1 (every container's) was never removed,
    6.6 MiB of /dev/shm lost at each SIGKILL."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale, _ = _instance_dir(master.parent, "kafka-sse-1-stale")         # pid 1: alive
    live, fd = _instance_dir(master.parent, f"kafka-sse-{dead.pid}-live", locked=True)
    old = master.parent / f"kafka-sse-{dead.pid}-old"                    # before the lock file
    (old / "peers").mkdir(parents=True)
    (old / "metrics").mkdir()
    old_alive = master.parent / "kafka-sse-1-oldalive"
    (old_alive / "peers").mkdir(parents=True)
    (old_alive / "metrics").mkdir()
    try:
        serve.on_starting(master.server)
        assert not stale.exists() and not old.exists()
        assert live.exists() and old_alive.exists()
    finally:
        os.close(fd)
        shutil.rmtree(old_alive, ignore_errors=True)
    instance_dir.remove_stale_dirs(str(master.parent))
    assert not live.exists()
    assert Path(os.environ["SSE_INSTANCE_DIR"]).exists(), "this master's own: held"


def test_a_directory_that_only_looks_like_an_instance_dir_is_never_removed(master):
    """With no temporary directory writable Python fell back to the working directory, and the
    sweep removed a user's `kafka-sse-29999-mydata` there, notes and all."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    mine = master.parent / f"kafka-sse-{dead.pid}-mydata"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    serve.on_starting(master.server)
    assert (mine / "notes.txt").read_text() == "keep me"


def test_a_temporary_directory_too_long_for_the_workers_sockets_is_refused_at_the_start(
        master, monkeypatch):
    """TMPDIR of 87 characters: every worker failed to make its socket (`AF_UNIX path too
    long`), /readyz said 200, and /stats, GetClients and /metrics each counted other streams."""
    deep = master.parent / ("t" * 90)
    deep.mkdir()
    monkeypatch.setattr(instance_dir, "shared_memory", lambda: None)
    monkeypatch.setenv("TMPDIR", str(deep))
    monkeypatch.setattr(tempfile, "tempdir", None)
    with pytest.raises(SystemExit):
        serve.on_starting(master.server)
    [(_, error)] = [line for line in master.server.logged if "too long" in str(line)]
    message = str(error)
    assert "set TMPDIR to a shorter directory" in message and str(deep) in message
    assert list(deep.iterdir()) == []


def test_no_writable_temporary_directory_is_one_line_saying_what_to_do(master, monkeypatch):
    monkeypatch.setattr(instance_dir, "shared_memory", lambda: None)

    def nowhere():
        raise FileNotFoundError("No usable temporary directory found in ['/tmp']")
    monkeypatch.setattr(tempfile, "gettempdir", nowhere)
    with pytest.raises(SystemExit):
        serve.on_starting(master.server)
    assert any("set TMPDIR to a writable directory" in str(line)
               for line in master.server.logged)


def test_a_dev_shm_without_room_is_said_and_the_instance_dir_goes_elsewhere(
        master, monkeypatch, tmp_path_factory):
    """A /dev/shm of 12 KiB (full): every worker died of SIGBUS at its first write to the
    mapped files there, replaced and dead again, and the log said only gunicorn's 'Worker
    (pid:...) was sent SIGBUS!'."""
    elsewhere = tmp_path_factory.mktemp("tmp")
    monkeypatch.setattr(instance_dir.tempfile, "tempdir", str(elsewhere))
    monkeypatch.setattr(instance_dir, "free_bytes",
                        lambda path: 12 * 1024 if path == str(master.parent) else 1 << 40)
    serve.on_starting(master.server)
    path = os.environ["SSE_INSTANCE_DIR"]
    assert os.path.dirname(path) == str(elsewhere) and list(master.parent.iterdir()) == []
    warned = [args[0] % args[1:] for args in master.server.logged
              if "instance directory needs" in args[0]]
    assert len(warned) == 1, master.server.logged
    assert f"{master.parent} has 12 KiB free" in warned[0] and str(elsewhere) in warned[0]
    assert "SIGBUS" in warned[0] and "--shm-size" in warned[0]


def test_a_failed_shared_limits_file_leaves_no_dir_and_one_line_says_what_to_do(
        master, monkeypatch):
    """No room in /dev/shm nor in TMPDIR: the start was a traceback ending in fallocate's
    ENOSPC (the resource-exhaustion audit)."""
    def refuse(path, settings):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(master.limits, "create", refuse)
    with pytest.raises(SystemExit):
        serve.on_starting(master.server)
    assert list(master.parent.iterdir()) == [] and "SSE_INSTANCE_DIR" not in os.environ
    [said] = [args[0] % args[1:] for args in master.server.logged
              if "shared files" in args[0]]
    assert f"in {master.parent} (No space left on device)" in said
    assert "--shm-size" in said and "TMPDIR" in said and "KiB" in said


def test_child_exit_forgets_the_dead_workers_live_metrics_and_socket(master):
    serve.on_starting(master.server)
    path = os.environ["SSE_INSTANCE_DIR"]
    from prometheus_client.mmap_dict import MmapedDict
    live = os.path.join(path, "metrics", "gauge_livesum_4242.db")
    ended = os.path.join(path, "metrics", "histogram_4242.db")
    sock = os.path.join(path, "peers", "4242.sock")
    for name in (live, sock):
        open(name, "wb").close()
    observed = MmapedDict(ended)
    observed.write_value("a key", 3.0, 0)
    observed.close()
    serve.child_exit(master.server, SimpleNamespace(pid=4242))
    assert not os.path.exists(live) and not os.path.exists(sock)
    assert not os.path.exists(ended)     # folded into the ended workers' file:
    kept = MmapedDict.read_all_values_from_file(
        os.path.join(path, "metrics", "histogram_retired.db"))
    assert [(key, value) for key, value, *_ in kept] == [("a key", 3.0)]   # still counted


def test_the_worker_hooks_start_and_stop_the_workers_service(monkeypatch):
    """post_worker_init starts the worker's service; worker_int (Ctrl-C, SIGQUIT) and
    worker_exit (SIGTERM, a reload's old worker) stop it: its streams end, its actors and
    management API stop. Without the stop the actors, threads to the interpreter, kept the
    worker alive until gunicorn's SIGKILL, the gRPC port held all that time."""
    import service.main
    calls = []
    monkeypatch.setattr(service.main, "start_in_worker", lambda w: calls.append(("start", w)))
    monkeypatch.setattr(service.main, "stop_in_worker", lambda w: calls.append(("stop", w)))
    monkeypatch.setattr(service.main, "release_logging", lambda: calls.append(("release",)))
    worker = SimpleNamespace(pid=4242)
    serve.post_worker_init(worker)
    serve.worker_int(worker)
    serve.worker_exit(SimpleNamespace(), worker)
    assert calls == [("start", worker), ("stop", worker), ("stop", worker), ("release",)]


def test_the_master_imports_no_metrics_library_before_its_environment_is_set():
    """prometheus_client picks its mode at import: the master must not import it first."""
    code = ("import sys, web.serve, web.worker, web.cli, web.gunicorn_log; "
            "print(sorted(m for m in ('prometheus_client', 'kafka', 'grpc') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(Path(__file__).parents[2]))
    assert out.stdout.strip() == "[]"


def test_the_worker_patches_ssl_without_a_warning():
    """With LOG_FORMAT=json gevent's MonkeyPatchWarning was a raw, non-JSON line in every
    worker: the master had imported PyJWT (and so ssl's context) through the web package."""
    code = ("import web.serve, web.worker, web.cli, web.gunicorn_log; "
            "web.serve.gunicorn_config(); "
            "from gevent import monkey; monkey.patch_all()")
    out = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True,
                         text=True, check=True, cwd=str(Path(__file__).parents[2]))
    assert "MonkeyPatchWarning" not in out.stderr, out.stderr


@pytest.mark.parametrize("health, serving", [
    (_health(), True), (_health(warm=False), False), (_health(state="unreachable"), False)])
def test_grpc_health_mirrors_readiness(health, serving):
    from rpc.health import NOT_SERVING, SERVING, KafkaHealth
    probe = KafkaHealth(FakeGateway(health=health))
    assert probe.refresh() == (SERVING if serving else NOT_SERVING)


# -- the JSON bodies keep their shape --------------------------------------------------------
STATS_KEYS = {
    "clients", "events_consumed", "events_delivered", "events_dropped", "invalid_events",
    "events_replayed", "kafka_replays", "slow_disconnects", "connections_total", "filter_groups",
    "per_topic", "invalid_per_topic", "tombstones", "tombstones_per_topic", "unowned_events",
    "delivered_per_topic", "dropped_per_topic", "kafka_lag", "kafka_state", "uptime_seconds",
    "started_at",
    "history_size", "limiter", "actors"}
LIMITER_KEYS = {"enabled", "streams", "addresses_streaming", "subjects_streaming", "buckets",
                "buckets_evicted", "refused"}


def test_slash_stats_shows_every_figure_under_its_name():
    body = _client().get("/stats").json
    assert set(body) == STATS_KEYS and set(body["limiter"]) == LIMITER_KEYS
    assert body["history_size"] == 42 and body["actors"] == 5


def test_slash_health_body():
    response = _client().get("/health")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "clients": 0, "warm": True,
                             "kafka": {"state": "connected", "detail": "", "partitions": ["t:0"]}}
    degraded = _client(_health(state="unreachable")).get("/health")
    assert degraded.status_code == 503 and degraded.json["status"] == "degraded"


def test_slash_health_stays_200_while_a_replacement_worker_connects():
    starting = make_health("connecting", detail="bootstrap kafka:9092", partitions=())
    report = combine_health([_health(), starting])
    assert _client(report).get("/health").status_code == 200
    assert _client(report).get("/readyz").status_code == 503
    assert _client(combine_health([starting, starting])).get("/health").status_code == 503


def test_metrics_renders_the_typed_figures():
    text = _client().get("/metrics").get_data(as_text=True)
    assert "sse_history_events 42.0" in text and "sse_actors 5.0" in text
    assert 'sse_kafka_state{state="connecting"} 1.0' in text


def test_metrics_are_never_served_from_a_cache():
    """A proxy's cached scrape would repeat old counters: Prometheus sees no change, then a
    jump (from a mutation audit)."""
    response = _client().get("/metrics")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"


# -- gunicorn's own access log, should anyone turn it on -------------------------------------------

def _gunicorn_access_line(tmp_path, logger_class, log_format):
    import datetime

    from gunicorn.config import Config
    cfg = Config()
    cfg.set("accesslog", str(tmp_path / "access.log"))
    cfg.set("access_log_format", log_format)
    log = logger_class(cfg)
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": "/events?ticket=T1CKET&event_types=a",
               "SERVER_PROTOCOL": "HTTP/1.1", "PATH_INFO": "/events",
               "QUERY_STRING": "ticket=T1CKET&event_types=a", "REMOTE_ADDR": "10.0.0.1",
               "HTTP_REFERER": "https://app.example/?ticket=T1CKET",
               "HTTP_AUTHORIZATION": "Bearer B3ARER", "HTTP_COOKIE": "sse=C00KIE"}
    req = SimpleNamespace(headers=[("AUTHORIZATION", "Bearer B3ARER"), ("COOKIE", "sse=C00KIE")])
    resp = SimpleNamespace(status="200 OK", headers=[], sent=10)
    log.access(resp, req, environ, datetime.timedelta(seconds=1))
    for handler in log.access_log.handlers:
        handler.flush()
    return (tmp_path / "access.log").read_text()


EVERY_PLACE = ('%(r)s %(q)s %(f)s %({authorization}i)s %({cookie}i)s %({query_string}e)s '
               '%({raw_uri}e)s %({http_authorization}e)s %({http_cookie}e)s')


def test_gunicorn_access_log_masks_tickets_and_credentials(tmp_path):
    from web.gunicorn_log import RedactingLogger
    assert serve.gunicorn_config(Settings.defaults())["logger_class"] == serve.LOGGER_CLASS
    line = _gunicorn_access_line(tmp_path, RedactingLogger, EVERY_PLACE)
    assert "GET /events?ticket=***&event_types=a HTTP/1.1" in line
    assert "event_types=a" in line and "ticket=***" in line
    for secret in ("T1CKET", "B3ARER", "C00KIE"):
        assert secret not in line


def test_gunicorn_plain_access_log_would_print_the_ticket(tmp_path):
    """What the redacting logger is for: the stock one prints them all."""
    from gunicorn.glogging import Logger
    line = _gunicorn_access_line(tmp_path, Logger, EVERY_PLACE)
    assert all(secret in line for secret in ("T1CKET", "B3ARER", "C00KIE"))


def test_gunicorn_error_lines_about_a_request_mask_its_ticket(tmp_path):
    from gunicorn.config import Config

    from web.gunicorn_log import RedactingLogger
    cfg = Config()
    cfg.set("errorlog", str(tmp_path / "error.log"))
    cfg.set("loglevel", "debug")
    log = RedactingLogger(cfg)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("Error handling request %s %s", "GET", "/events?ticket=T1CKET&x=1")
    log.warning("Invalid request from ip=1.2.3.4: Invalid HTTP request line: "
                "'GET /events?jwt=J3WT HTTP/1.1 x'")
    log.warning("Invalid request from ip=1.2.3.4: Invalid HTTP request line: "
                f"'GET /events/{JWT} HTTP/1.1 x'")
    for handler in log.error_log.handlers:
        handler.flush()
    text = (tmp_path / "error.log").read_text()
    assert "Error handling request GET /events?ticket=***&x=1" in text and "boom" in text
    assert "T1CKET" not in text and "J3WT" not in text and JWT[:30] not in text


@pytest.mark.parametrize("level", ["debug", "info"])
def test_gunicorn_debug_lines_are_masked_when_shown_and_not_cleaned_when_not(
        tmp_path, monkeypatch, level):
    from gunicorn.config import Config

    import web.gunicorn_log
    cleaned = []
    real = web.gunicorn_log.redact_words
    monkeypatch.setattr(web.gunicorn_log, "redact_words",
                        lambda text: cleaned.append(text) or real(text))
    cfg = Config()
    cfg.set("errorlog", str(tmp_path / "error.log"))
    cfg.set("loglevel", level)
    log = web.gunicorn_log.RedactingLogger(cfg)
    log.debug("%s %s", "GET", "/events?ticket=T1CKET")     # gunicorn, at every request
    for handler in log.error_log.handlers:
        handler.flush()
    text = (tmp_path / "error.log").read_text()
    if level == "debug":
        assert "GET /events?ticket=***" in text and "T1CKET" not in text and cleaned
    else:
        assert text == "" and cleaned == []


def test_each_of_several_workers_takes_a_burst_of_connections_per_turn_of_its_loop():
    """gunicorn's gevent worker sets max_accept = 1 when it runs several workers; a busy worker
    then accepts one connection per turn of its loop, and a reconnect storm overflows the
    kernel's listen queue (bench: 230 streams/s at 2 workers against 2,466/s at one)."""
    from gunicorn.workers import ggevent

    import web.worker
    server = ggevent.StreamServer(("127.0.0.1", 0), handle=lambda *args: None)
    try:
        server.max_accept = 1                     # what GeventWorker.run does then
        assert server.max_accept == web.worker.ACCEPT_BURST >= 16
    finally:
        server.close()


def test_the_access_log_keeps_one_request_on_one_line(caplog):
    """gunicorn decodes %0a, %0d and %1b in the path: written as they were, a request could
    add lines of its own choosing to a text log (a forged `GET /forged 200` line)."""
    import logging
    settings = Settings.defaults(rate_limit_enabled=False, access_log=True)
    with caplog.at_level(logging.INFO, logger="web.access"):
        _client(settings=settings).get(
            "/x%0a2026-12-01 14:25:09,000 INFO web.access: GET /forged 200%0d%1b[2J").close()
    [record] = [r for r in caplog.records if r.name == "web.access"]
    line = record.getMessage()
    assert "\n" not in line and "\r" not in line and "\x1b" not in line, line
    assert "\\n2026-12-01" in line and line.endswith("from 127.0.0.1") and " 404 " in line
    assert "\n" not in record.path and record.path.startswith("/x\\n")


@pytest.mark.parametrize("variable", ["HTTP_PORT", "ADMIN_PORT"])
def test_a_port_in_use_stops_the_master_at_once_with_one_line_naming_the_variable(
        master, variable):
    """gunicorn alone retried for five seconds in eleven lines that named no variable."""
    import socket
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    ports = {"admin_port": free_port(), variable.lower(): port}
    settings = master.settings.replace(admin_host="127.0.0.1", **ports)
    serve.gunicorn_config(settings)
    try:
        with pytest.raises(SystemExit) as stop:
            serve.on_starting(master.server)
    finally:
        taken.close()
    assert stop.value.code == 1
    [(line, *args)] = [entry for entry in master.server.logged if "in use" in entry[0] % entry[1:]]
    text = line % tuple(args)
    assert f"{variable}={port}" in text and f"127.0.0.1:{port} is in use" in text, text
    assert f"choose another {variable}" in text
    assert "SSE_INSTANCE_DIR" not in os.environ            # nothing made, nothing left


def test_a_host_that_is_not_this_machines_stops_the_master_naming_the_variable(master):
    settings = master.settings.replace(http_host="no-such-host.invalid")
    serve.gunicorn_config(settings)
    with pytest.raises(SystemExit):
        serve.on_starting(master.server)
    text = " ".join(entry[0] % entry[1:] for entry in master.server.logged)
    assert "HTTP_HOST='no-such-host.invalid': cannot listen on it" in text, text


@pytest.mark.parametrize("host", ["no-such-host.invalid", "203.0.113.9"])
def test_a_grpc_host_that_is_not_this_machines_stops_the_master_naming_the_variable(master,
                                                                                    host):
    """It was a warning saying the API would start "once it is free", and each worker then
    retried the bind for ever, gRPC core writing an error line to stderr at every try."""
    serve.gunicorn_config(master.settings.replace(grpc_host=host, grpc_port=free_port()))
    with pytest.raises(SystemExit) as stop:
        serve.on_starting(master.server)
    assert stop.value.code == 1
    text = " ".join(entry[0] % entry[1:] for entry in master.server.logged)
    assert f"GRPC_HOST={host!r}: cannot listen on it" in text and "once" not in text, text
    assert "SSE_INSTANCE_DIR" not in os.environ


def test_a_restart_within_a_minute_of_a_stop_with_streams_open_is_not_refused(master):
    """A gateway stopped with streams open leaves their connections in TIME_WAIT on HTTP_PORT
    for a minute. gunicorn binds the port all the same (SO_REUSEADDR), so the master's own
    check must too: it stopped the restart with 'in use by another process'."""
    import socket
    port = master.settings.http_port
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)    # as gunicorn's has
    listener.bind(("127.0.0.1", port))
    listener.listen()
    client = socket.create_connection(("127.0.0.1", port))
    stream, _ = listener.accept()
    stream.close()                                  # the gateway closes first: TIME_WAIT
    client.recv(1)
    client.close()
    listener.close()
    serve.on_starting(master.server)                # no SystemExit
    text = " ".join(entry[0] % entry[1:] for entry in master.server.logged)
    assert "in use" not in text and os.environ["SSE_INSTANCE_DIR"], text


@pytest.mark.parametrize("host", ["::1", "::"])
def test_an_ipv6_http_host_is_checked_as_ipv6(master, host):
    """HTTP_HOST=:: (every address, IPv4 too) or ::1: the master's check must bind it as an
    IPv6 address; as an IPv4 one it fails, and every start is refused ('cannot listen on
    it: set an address of this machine')."""
    serve.gunicorn_config(master.settings.replace(http_host=host))
    serve.on_starting(master.server)                # no SystemExit
    text = " ".join(entry[0] % entry[1:] for entry in master.server.logged)
    assert "cannot listen" not in text and os.environ["SSE_INSTANCE_DIR"], text


def test_a_port_the_master_may_not_listen_on_is_said_as_such(master, monkeypatch):
    """HTTP_PORT=80 without root or CAP_NET_BIND_SERVICE (EACCES): the line says that, not
    'set an address of this machine', which sends the operator after a good HTTP_HOST.
    (These tests run as root, who may listen anywhere: the bind's refusal is given.)"""
    import errno

    def not_allowed(host, port):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(serve, "_try_bind", not_allowed)
    with pytest.raises(SystemExit):
        serve.on_starting(master.server)
    port = master.settings.http_port
    text = " ".join(entry[0] % entry[1:] for entry in master.server.logged)
    assert (f"HTTP_PORT={port}: not allowed to listen on 127.0.0.1:{port} (ports below 1024 "
            "need CAP_NET_BIND_SERVICE): choose another HTTP_PORT") in text, text
    assert "set an address" not in text, text


@pytest.mark.parametrize("operator", [None, "DEBUG"])
def test_grpc_core_logs_nothing_unless_the_operator_asks(master, monkeypatch, operator):
    """gRPC's core writes a line of its own for each connection that fails the TLS handshake
    or sends a malformed HTTP/2 header (at ERROR): anyone who reaches GRPC_PORT could fill the
    disk. The master turns it off for the workers it forks, and keeps a GRPC_VERBOSITY the
    operator set."""
    if operator:
        monkeypatch.setenv("GRPC_VERBOSITY", operator)
    serve.on_starting(master.server)
    assert os.environ["GRPC_VERBOSITY"] == (operator or "NONE")


def test_sockets_handed_over_by_an_old_master_or_systemd_are_not_checked(master, monkeypatch):
    import socket
    taken = socket.socket()
    taken.bind(("127.0.0.1", master.settings.http_port))
    taken.listen()
    try:
        monkeypatch.setenv("GUNICORN_FD", str(taken.fileno()))   # USR2: the port is ours
        serve.on_starting(master.server)
    finally:
        taken.close()


def test_a_grpc_port_held_by_another_process_is_said_at_start_and_the_streams_still_run(
        master):
    """It stood by for ever with one INFO line (\"taken by another worker ... else by another
    process\") while /readyz said ready: with no worker yet, the master knows who it is."""
    import socket
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    serve.gunicorn_config(master.settings.replace(grpc_port=port))
    try:
        serve.on_starting(master.server)                   # no exit: the streams are served
    finally:
        taken.close()
    text = " ".join(entry[0] % entry[1:] for entry in master.server.logged)
    assert f"GRPC_PORT={port}: 127.0.0.1:{port} is in use by another process" in text, text
    assert "choose another GRPC_PORT" in text and os.environ["SSE_INSTANCE_DIR"]


def test_a_configuration_error_is_a_json_line_when_log_format_is_json(monkeypatch, tmp_path,
                                                                      capsys):
    """With LOG_FORMAT=json the start-up refusal was the one line on stderr that was not JSON."""
    import json
    from web import cli
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HTTP_PORT", "eighty")
    monkeypatch.setenv("LOG_FORMAT", "json")
    assert cli.main([]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    entry = json.loads(line)
    assert entry["level"] == "error" and entry["logger"] == "kafka-sse-gateway"
    assert entry["message"].startswith("invalid configuration: HTTP_PORT='eighty'")
    source = Path(__file__).parents[2] / "gunicorn.conf.py"
    with pytest.raises(SystemExit) as stop:                 # gunicorn -c gunicorn.conf.py
        exec(compile(source.read_text(), str(source), "exec"), {})
    assert json.loads(str(stop.value))["message"] == entry["message"]
    monkeypatch.setenv("LOG_FORMAT", "text")
    assert cli.main([]) == 2
    # its level, as its warnings give theirs: a text-log alert on "error" missed the one line
    # that says why the start failed (a log audit)
    assert capsys.readouterr().err.startswith(
        "kafka-sse-gateway: error: invalid configuration: ")


def test_the_master_warns_once_of_a_password_sent_in_clear(master):
    serve.gunicorn_config(replace(master.settings, kafka_security_protocol="SASL_PLAINTEXT",
                                  kafka_sasl_mechanism="PLAIN", kafka_sasl_username="alice",
                                  kafka_sasl_password="pw", kafka_brokers=("kafka-1:9092",)))
    serve.on_starting(master.server)
    warned = [args[1] for args in master.server.logged if "in clear text" in str(args[1:])]
    assert len(warned) == 1 and "kafka-1:9092" in warned[0] and "pw" not in warned[0].split()


# -- the settings every worker runs: the master's, read again on SIGHUP -----------------------

def test_a_replacement_worker_runs_the_masters_settings_not_an_env_edited_since(tmp_path):
    """A worker used to read .env itself when it started: after a bad edit, the next worker
    gunicorn started (SIGTTIN, a crashed or timed-out worker's replacement) failed to boot and
    gunicorn halted the whole instance; after a good one, that worker alone ran the new
    values (another SSE_MAX_CLIENTS, another AUTH_JWT_SECRET) beside the others."""
    code = ("import os, web.serve as s; from actors.settings import Settings; "
            "s.gunicorn_config(Settings.defaults(sse_max_clients=7)); "
            "os.environ['SSE_INSTANCE_DIR'] = '/dev/shm/kafka-sse-1-x'; "
            "open('.env', 'w').write('SSE_MAX_CLIENTS=bogus\\n'); "
            "import web.wsgi; settings = web.wsgi.app.config['SETTINGS']; "
            "print(settings.sse_max_clients, settings.sse_instance_dir)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    env.pop("SSE_INSTANCE_DIR", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=60)
    assert out.stdout.split() == ["7", "/dev/shm/kafka-sse-1-x"], out.stderr[-2000:]


def _environ_of(master, monkeypatch):
    """The master's free ports in the environment a SIGHUP reads: with the defaults (8084,
    9094) these tests failed while `make run` or another gateway held those ports."""
    for name in ("http_host", "http_port", "grpc_port", "workers"):
        monkeypatch.setenv(name.upper(), str(getattr(master.settings, name)))


def test_a_sighup_reads_the_settings_again_and_a_bad_edit_keeps_the_running_ones(
        master, monkeypatch, tmp_path, caplog):
    """gunicorn.conf.py: a SIGHUP runs the file again. A bad value used to raise SystemExit in
    the master's loop, which ended the master and left its workers without it."""
    monkeypatch.chdir(tmp_path)
    _environ_of(master, monkeypatch)
    serve.gunicorn_config(replace(master.settings, sse_max_clients=7))
    serve.on_starting(master.server)
    monkeypatch.setenv("SSE_MAX_CLIENTS", "9")
    assert serve.gunicorn_config()["worker_connections"] == 209
    assert serve.worker_settings().sse_max_clients == 9
    monkeypatch.setenv("SSE_MAX_CLIENTS", "bogus")
    assert serve.gunicorn_config()["worker_connections"] == 209
    assert serve.worker_settings().sse_max_clients == 9
    assert "SSE_MAX_CLIENTS='bogus'" in caplog.text and "kept" in caplog.text


def test_the_console_script_reads_the_settings_again_on_sighup(master, monkeypatch, tmp_path):
    from web import cli
    monkeypatch.chdir(tmp_path)
    _environ_of(master, monkeypatch)
    runner = cli.GunicornRunner(replace(master.settings, sse_max_clients=7))
    serve.on_starting(master.server)
    assert runner.cfg.worker_connections == 207
    monkeypatch.setenv("SSE_MAX_CLIENTS", "9")
    runner.reload()
    assert runner.cfg.worker_connections == 209
    assert serve.worker_settings().sse_max_clients == 9


def test_a_sighup_that_raises_sse_max_clients_gives_the_new_workers_a_limits_file_to_fit(
        master, monkeypatch):
    """The limits file was sized at the start (2 x SSE_MAX_CLIENTS cells, refused past 3/4):
    after a SIGHUP that raised SSE_MAX_CLIENTS from 100 to 5,000 the instance refused its
    193rd address as too_many_streams."""
    shared_limits = real_shared_limits
    monkeypatch.setitem(sys.modules, "actors.shared_limits", shared_limits)
    serve.gunicorn_config(replace(master.settings, sse_max_clients=100))
    serve.on_starting(master.server)
    path = os.path.join(os.environ["SSE_INSTANCE_DIR"], shared_limits.LIMITS_FILE)
    before = os.stat(path).st_ino
    serve.on_reload(master.server)
    assert os.stat(path).st_ino == before            # the same size: the same file, kept
    raised = replace(master.settings, sse_max_clients=5000, sse_max_clients_per_ip=5000,
                     rate_limit_enabled=False)
    serve.gunicorn_config(raised)
    serve.on_reload(master.server)
    limits = shared_limits.SharedLimits.attach(path, raised)
    try:
        refused = [limits.admit(f"10.0.{n // 250}.{n % 250}", True, rate_limited=False)[1]
                   for n in range(4000)]
    finally:
        limits.close()
    assert not any(refused)


class FakeArbiter:
    """gunicorn's Arbiter as far as num_workers goes: SIGTTIN adds one, SIGTTOU takes one."""

    def __init__(self, hook, workers):
        self.hook, self._workers, self.logged = hook, workers, []
        self.log = SimpleNamespace(error=lambda *args: self.logged.append(args))

    @property
    def num_workers(self):
        return self._workers

    @num_workers.setter
    def num_workers(self, value):
        old, self._workers = self._workers, value
        self.hook(self, value, old)


def test_sigttin_stops_at_the_workers_the_shared_limits_hold_with_a_sighup_beside_them():
    """Every worker holds a slot of the shared limits (256). The 257th worker failed its boot
    and gunicorn then halted the whole instance; a SIGHUP starts as many workers again beside
    the old ones, so 129 and a SIGHUP did the same. Below 128, SIGTTIN and SIGTTOU change the
    count freely."""
    config = serve.gunicorn_config(Settings.defaults(workers=2))
    arbiter = FakeArbiter(config["nworkers_changed"], workers=2)
    most = real_shared_limits.SLOTS // 2
    for expected in range(3, most + 1):
        arbiter.num_workers += 1
        assert arbiter.num_workers == expected and not arbiter.logged
    arbiter.num_workers += 1
    assert arbiter.num_workers == most
    (said,) = arbiter.logged
    assert "SIGTTIN" in said[0] and str(most) in said[0] % said[1:]
    arbiter.num_workers -= 1
    assert arbiter.num_workers == most - 1


def test_a_sighup_to_a_port_it_cannot_listen_on_keeps_the_running_settings(
        master, monkeypatch, tmp_path, caplog):
    """gunicorn closes the old listeners on a SIGHUP that changes the address, and when the new
    one cannot be bound it retries for 5 s and exits the master: the whole instance went down
    (shown with the console script: "Can't connect to ('0.0.0.0', ...)", master gone)."""
    import socket
    monkeypatch.chdir(tmp_path)
    serve.on_starting(master.server)
    running = serve.gunicorn_config()["bind"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("HTTP_HOST", "127.0.0.1")
        monkeypatch.setenv("HTTP_PORT", str(port))
        assert serve.gunicorn_config()["bind"] == running
    assert f"HTTP_PORT={port}: 127.0.0.1:{port} is in use" in caplog.text
    assert "kept the running settings" in caplog.text
    free = free_port()
    monkeypatch.setenv("HTTP_PORT", str(free))
    assert serve.gunicorn_config()["bind"] == [f"127.0.0.1:{free}"]


def _invalid_request_lines(tmp_path, log) -> list[str]:
    for handler in log.error_log.handlers:
        handler.flush()
    return (tmp_path / "error.log").read_text().splitlines()


def test_a_flood_of_invalid_requests_logs_a_bounded_number_of_short_lines(tmp_path):
    """gunicorn logs one warning per request it cannot parse, with the request line in it (up
    to 4 KB): one client sending garbage filled 23 MB of log in 10 s. A few lines per report
    are logged, shortened, and the others counted in the worker's report."""
    from gunicorn.config import Config

    from web.gunicorn_log import INVALID_LINES_PER_REPORT, RedactingLogger
    cfg = Config()
    cfg.set("errorlog", str(tmp_path / "error.log"))
    log = RedactingLogger(cfg)
    garbage = "G" * 4000
    for _ in range(1000):
        log.warning(f"Invalid request from ip=1.2.3.4: Invalid HTTP request line: '{garbage}'")
    lines = _invalid_request_lines(tmp_path, log)
    assert len(lines) == INVALID_LINES_PER_REPORT
    assert all("Invalid request from ip=1.2.3.4" in line and len(line) < 400 for line in lines)
    log.report_unlogged()
    log.report_unlogged()                 # nothing more to say: no line
    lines = _invalid_request_lines(tmp_path, log)
    assert len(lines) == INVALID_LINES_PER_REPORT + 1
    assert f"{1000 - INVALID_LINES_PER_REPORT} more invalid requests" in lines[-1]
    log.warning("Invalid request from ip=5.6.7.8: Invalid HTTP Version: (9, 9)")   # a new turn
    assert "ip=5.6.7.8" in _invalid_request_lines(tmp_path, log)[-1]
    log.warning(f"Invalid request from ip=5.6.7.8: Invalid HTTP request line: '{'G' * 197}"
                f" /events/{JWT} HTTP/1.1'")    # masked first, then cut: not cut in its middle
    assert JWT[:30] not in _invalid_request_lines(tmp_path, log)[-1]
    log.warning("something else %s", "entirely")              # other warnings are not counted
    assert "something else entirely" in _invalid_request_lines(tmp_path, log)[-1]


class _Sent:
    """A socket that has received `data` (gunicorn reads it 8 KiB at a time)."""

    def __init__(self, data: bytes):
        self.data = data

    def recv(self, size: int) -> bytes:
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk


def _head(fields: int, size: int = 8000) -> bytes:
    return (b"GET /health HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%d: %s\r\n" % (i, b"a" * size) for i in range(fields)) + b"\r\n")


def test_a_request_head_is_bounded_in_all_not_only_per_field(monkeypatch):
    """gunicorn takes 100 fields of 8,190 bytes (785 KB) and scans the whole head again at each
    8 KiB it reads: 147 ms of CPU per such request, with the worker's hub held meanwhile (four
    senders took every stream's p50 latency from 17 ms to 1.2 s). The worker bounds the head
    at MAX_HEAD_BYTES; Authorization, Cookie and Last-Event-ID of 8 KB each fit."""
    from gunicorn.config import Config
    from gunicorn.http import RequestParser
    from gunicorn.http.errors import LimitRequestHeaders

    import web.worker
    monkeypatch.setattr(RequestParser, "mesg_class", RequestParser.mesg_class)   # restored after
    web.worker.bound_request_heads()
    cfg = Config()
    assert next(RequestParser(cfg, _Sent(_head(6)), ("127.0.0.1", 1))).path == "/health"
    with pytest.raises(LimitRequestHeaders):
        next(RequestParser(cfg, _Sent(_head(98)), ("127.0.0.1", 1)))
    assert len(_head(98)) > web.worker.MAX_HEAD_BYTES > len(_head(6))


def test_a_sighup_names_a_misspelt_variable_of_the_new_env_file(master, monkeypatch, tmp_path):
    """The start warns of 'unknown variable SSE_MAX_CLIENT is ignored (did you mean ...?)';
    a SIGHUP after editing .env (real gunicorn: SSE_HEARTBAET_SECONDS=5 added) said nothing,
    and the change the operator meant silently did not apply."""
    monkeypatch.chdir(tmp_path)
    serve.on_starting(master.server)
    master.server.logged.clear()
    (tmp_path / ".env").write_text("SSE_HEARTBAET_SECONDS=5\n")
    serve.on_reload(master.server)
    said = [args[0] % args[1:] for args in master.server.logged
            if not args[0].startswith(("SIGHUP: taking", "SIGHUP: no setting"))]
    assert said == ["SIGHUP: unknown variable SSE_HEARTBAET_SECONDS is ignored (did you mean "
                    "SSE_HEARTBEAT_SECONDS?)"], said


@pytest.mark.parametrize("flags, named", [
    ("--workers 9", "workers 9 instead of 1 (WORKERS)"),
    ("--worker-class sync", "worker_class 'sync' instead of 'web.worker.GatewayWorker'"),
    ("--bind 0.0.0.0:18999", "bind ['0.0.0.0:18999'] instead of ['127.0.0.1:"),
    ("--preload", "preload_app True instead of False"),
    ("-e AUTH_MODE=required", "-e AUTH_MODE (the environment or .env")])
def test_gunicorn_flags_that_undo_the_gateways_settings_stop_the_start(flags, named, tmp_path):
    """GUNICORN_CMD_ARGS (or flags after -c gunicorn.conf.py) won over the settings: 9 workers
    past the instance's room, a bind the listen checks never saw, a sync worker that holds one
    stream at a time."""
    root = Path(__file__).parents[2]
    env = {**os.environ, "GUNICORN_CMD_ARGS": flags, "WORKERS": "1", "HTTP_HOST": "127.0.0.1",
           "HTTP_PORT": str(free_port()), "GRPC_PORT": "0", "KAFKA_BROKERS": "127.0.0.1:9"}
    env.pop("SSE_INSTANCE_DIR", None)
    out = subprocess.run([str(Path(sys.executable).parent / "gunicorn"), "-c",
                          str(root / "gunicorn.conf.py")], cwd=str(tmp_path), env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and named in out.stderr, out.stderr[-2000:]
    assert "GUNICORN_CMD_ARGS" in out.stderr and "Traceback" not in out.stderr


def test_a_refused_gunicorn_env_flag_names_its_variables_never_their_values(tmp_path):
    root = Path(__file__).parents[2]
    env = {**os.environ, "GUNICORN_CMD_ARGS": "-e AUTH_JWT_SECRET=s3cr3t-value-never-shown",
           "WORKERS": "1", "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(free_port()),
           "GRPC_PORT": "0", "KAFKA_BROKERS": "127.0.0.1:9"}
    env.pop("SSE_INSTANCE_DIR", None)
    out = subprocess.run([str(Path(sys.executable).parent / "gunicorn"), "-c",
                          str(root / "gunicorn.conf.py")], cwd=str(tmp_path), env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "-e AUTH_JWT_SECRET" in out.stderr, out.stderr[-2000:]
    assert "s3cr3t" not in out.stderr


def test_the_working_directory_is_never_the_instance_dir_s_parent_unless_asked(
        master, monkeypatch, tmp_path):
    """Python's last resort when no temporary directory is writable: the working directory
    (an instance directory appeared at /). Named by TMPDIR, or /tmp itself, it is fine."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.delenv("TMPDIR", raising=False)
    monkeypatch.delenv("TEMP", raising=False)
    monkeypatch.delenv("TMP", raising=False)
    # no writable candidate but the working directory, as on a read-only root with /tmp too
    monkeypatch.setattr(tempfile, "_candidate_tempdir_list", lambda: [str(tmp_path)])
    with pytest.raises(instance_dir.InstanceDirError):
        instance_dir._temporary_dir()
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert instance_dir._temporary_dir() == str(tmp_path)
    monkeypatch.delenv("TMPDIR")
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.chdir("/tmp")
    monkeypatch.setattr(tempfile, "_candidate_tempdir_list", lambda: ["/tmp"])
    assert instance_dir._temporary_dir() == "/tmp"


def test_checking_for_overridden_settings_records_nothing(monkeypatch):
    """overridden() compares; it rebound the settings the workers and a SIGHUP go by."""
    from gunicorn.config import Config
    for name in ("_applied", "_settings", "_replaced"):     # put back after the test
        monkeypatch.setattr(serve, name, getattr(serve, name))
    first, other = Settings.defaults(), Settings.defaults(workers=3)
    serve.gunicorn_config(first)
    before = (serve._settings, serve._replaced)
    assert serve.overridden(Config(), other)          # a fresh Config differs: said
    assert (serve._settings, serve._replaced) == before and serve._settings is first


def test_a_worker_killed_after_its_timeout_is_not_said_to_lack_memory(tmp_path):
    """gunicorn follows 'WORKER TIMEOUT (pid:N)' with 'Worker (pid:N) was sent SIGKILL!
    Perhaps out of memory?': an operator at 3 a.m. went looking for a memory limit when the
    worker had hung (a fault audit). A SIGKILL without a timeout before it keeps the guess."""
    from gunicorn.config import Config

    from web.gunicorn_log import RedactingLogger
    cfg = Config()
    cfg.set("errorlog", str(tmp_path / "error.log"))
    log = RedactingLogger(cfg)
    log.critical("WORKER TIMEOUT (pid:%s)", 4242)
    log.error("Worker (pid:%s) was sent %s! Perhaps out of memory?", 4242, "SIGKILL")
    log.error("Worker (pid:%s) was sent %s! Perhaps out of memory?", 4343, "SIGKILL")
    for handler in log.error_log.handlers:
        handler.flush()
    lines = (tmp_path / "error.log").read_text().splitlines()
    [timed_out] = [line for line in lines if "4242" in line and "SIGKILL" in line]
    assert "out of memory" not in timed_out and "WORKER TIMEOUT" in timed_out, timed_out
    assert "did not answer gunicorn for 30 s" in timed_out, timed_out
    [other] = [line for line in lines if "4343" in line]
    assert "Perhaps out of memory?" in other
