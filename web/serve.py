"""How gunicorn runs the gateway: its settings and hooks, in one place.

Both ways of starting it use this module: the console script (`kafka-sse-gateway`, web/cli.py)
and `gunicorn -c gunicorn.conf.py` (the file only applies `gunicorn_config()`).

gunicorn's master is not patched by gevent: nothing here may import kafka, pykka, grpc or the
app at module level; the hooks import what they need inside the worker.
"""
from __future__ import annotations

from actors.logs import gunicorn_logconfig
from actors.settings import Settings

WSGI_APP = "web.wsgi:app"
WORKER_CLASS = "web.worker.GatewayWorker"
LOGGER_CLASS = "web.gunicorn_log.RedactingLogger"   # its access log, if turned on, masks tickets
HOW_TO_START = ("start it with `kafka-sse-gateway` (installed with the package), or "
                "`gunicorn -c gunicorn.conf.py` from the project directory")
ONE_WORKER = ("the gateway runs exactly one worker per instance (the actors, the streams "
              "and the gRPC server live in it); got {n}. To serve more clients, run more "
              "instances behind a load balancer (README: Many instances)")

_applied = False   # set in the master; a forked worker inherits it (web/wsgi.py checks it)


def hooks_applied() -> bool:
    """True when this process (or its master) runs with gunicorn_config()."""
    return _applied


def gunicorn_config(settings: Settings | None = None) -> dict:
    """gunicorn's settings and hooks for the gateway, from `settings` (default: the environment)."""
    global _applied
    settings = settings or Settings.from_env()
    _applied = True
    return {
        "wsgi_app": WSGI_APP,
        "bind": bind_addresses(settings),
        # gunicorn's gevent worker plus a time limit and per-address cap for unfinished
        # requests (web/worker.py). A dotted path: the class is imported when the master starts.
        "worker_class": WORKER_CLASS,
        # One worker: the actors and the gRPC server live inside it (on_starting enforces it).
        "workers": 1,
        # gevent's default of 1000 connections would silently cap SSE_MAX_CLIENTS. The worker
        # adds room for HTTP_MAX_PENDING unfinished requests on top.
        "worker_connections": settings.sse_max_clients + 200,
        "keepalive": 0,
        "timeout": 30,
        "graceful_timeout": 10,
        "control_socket_disable": True,
        "preload_app": False,
        "accesslog": None,
        "logger_class": LOGGER_CLASS,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "logconfig_dict": gunicorn_logconfig(settings),   # LOG_FORMAT=json: gunicorn's too
        "on_starting": on_starting,
        "nworkers_changed": nworkers_changed,
        "post_worker_init": post_worker_init,
        "worker_int": worker_int,
        "worker_exit": worker_exit,
    }


def bind_addresses(settings: Settings) -> list[str]:
    """The public address, then the admin listener's when ADMIN_PORT is set."""
    addresses = [f"{settings.http_host}:{settings.http_port}"]
    if settings.admin_port:
        addresses.append(f"{settings.admin_host}:{settings.admin_port}")
    return addresses


# -- hooks --------------------------------------------------------------------------------
def on_starting(server):
    """In the master, before any socket or worker: refuse a configuration that cannot work."""
    if server.cfg.workers != 1:
        raise SystemExit(f"kafka-sse-gateway: {ONE_WORKER.format(n=server.cfg.workers)}")


def nworkers_changed(server, new_value, old_value):
    """TTIN at run time asks for one more worker: keep one."""
    if old_value is not None and new_value > 1:
        server.log.warning(ONE_WORKER.format(n=new_value) + "; staying at 1")
        server.num_workers = 1


# The hooks hand over to the composition root (service/main.py), imported in the worker.
def post_worker_init(worker):
    from service.main import start_in_worker
    start_in_worker(worker)


def worker_int(worker):
    # Ctrl-C / SIGQUIT: stop here, while gevent still runs; the exit that follows cannot wait.
    from service.main import stop_in_worker
    stop_in_worker(worker)


def worker_exit(server, worker):
    from service.main import release_logging, stop_in_worker
    stop_in_worker(worker)
    release_logging()
