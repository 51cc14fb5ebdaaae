# gunicorn settings for the gateway: `gunicorn -c gunicorn.conf.py`.
# The master process is not patched by gevent, so nothing at this level may import
# kafka, pykka, grpc or the app; the hooks import what they need inside the worker.
from actors.settings import Settings, SettingsError

try:
    _settings = Settings.from_env()
except SettingsError as _exc:
    raise SystemExit(f"kafka-sse-gateway: {_exc}") from None

# -- serving ------------------------------------------------------------------------------
wsgi_app = "web.wsgi:app"
bind = [f"{_settings.http_host}:{_settings.http_port}"]
worker_class = "gevent"
# One worker: the actors and the gRPC server live inside it. Scale out with more
# instances (each reads every partition), not more workers.
workers = 1
# gevent's default of 1000 connections would silently cap SSE_MAX_CLIENTS.
worker_connections = _settings.sse_max_clients + 200
keepalive = 0
timeout = 30
graceful_timeout = 10
control_socket_disable = True
preload_app = False

# -- logging ------------------------------------------------------------------------------
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()


# -- hooks --------------------------------------------------------------------------------
def post_worker_init(worker):
    from web.lifecycle import start_in_worker
    start_in_worker(worker)


def worker_int(worker):
    # Ctrl-C / SIGQUIT: stop here, while gevent still runs; the exit that follows cannot wait.
    from web.lifecycle import stop_in_worker
    stop_in_worker(worker)


def worker_exit(server, worker):
    from web.lifecycle import stop_in_worker
    stop_in_worker(worker)
