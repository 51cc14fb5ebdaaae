"""What a gunicorn worker does after it is patched and before it exits.

Called from gunicorn.conf.py's hooks: start the actor system (and the management API)
in the worker, end the streams when the worker is told to stop, stop the actors last.
"""
from __future__ import annotations

import gc
import logging
import os
import threading

from actors import logs, system as actor_system

logger = logging.getLogger(__name__)


def start_in_worker(worker) -> None:
    app = worker.wsgi
    settings = app.config["SETTINGS"]
    logs.configure(settings)

    def retire(reason: str) -> None:
        logger.critical("retiring worker %d: %s", os.getpid(), reason)
        worker.alive = False

    system = actor_system.start(settings, on_fatal=retire)
    from web import attach
    attach(app, system)
    worker.sse_system = system
    threading.Thread(target=_end_streams_on_shutdown, args=(worker, system),
                     name="shutdown-watch", daemon=True).start()
    _start_management(worker, settings, system)
    _tune_gc()


def _tune_gc() -> None:
    """Fewer, cheaper collections: with thousands of streams, each full collection walks
    every greenlet and actor and stalls every stream for tens of milliseconds."""
    gc.collect()
    gc.freeze()                       # what exists after start-up is never collected
    gc.set_threshold(50_000, 20, 100)


def _start_management(worker, settings, system) -> None:
    try:
        from rpc.server import start_server
    except ImportError as exc:
        logger.error("management API not started: %s (is the package installed whole?)", exc)
        return
    worker.grpc_server = start_server(settings, system)


def _end_streams_on_shutdown(worker, system) -> None:
    """gunicorn waits for open requests on SIGTERM; SSE requests never end on their own."""
    import time
    while worker.alive:
        time.sleep(0.2)
    logger.info("worker %d stopping: closing %s", os.getpid(), "all streams")
    actor_system.close_streams(system)


def stop_in_worker(worker) -> None:
    """Idempotent: called on SIGINT/SIGQUIT (worker_int, while gevent still runs) and at exit."""
    server, worker.grpc_server = getattr(worker, "grpc_server", None), None
    if server is not None:
        server.stop(grace=1)
    system, worker.sse_system = getattr(worker, "sse_system", None), None
    if system is not None:
        actor_system.stop(system)
