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
from actors.settings import unknown_variables

logger = logging.getLogger(__name__)


def start_in_worker(worker) -> None:
    app = worker.wsgi
    settings = app.config["SETTINGS"]
    logs.configure(settings)
    for warning in unknown_variables():
        logger.warning("%s", warning)

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
        from rpc.server import start_management
    except ImportError as exc:
        logger.error("management API not started: %s (is the package installed whole?)", exc)
        return
    # Keeps retrying while the port is busy: after a SIGHUP the old worker still holds it.
    worker.grpc_server = start_management(settings, system)


def _end_streams_on_shutdown(worker, system) -> None:
    """gunicorn waits for open requests on SIGTERM; SSE requests never end on their own.

    The gRPC port goes first, so that after a SIGHUP the new worker (already started,
    retrying the bind) takes the management API over while this one drains its streams."""
    import time
    while worker.alive:
        time.sleep(0.2)
    logger.info("worker %d stopping: closing %s", os.getpid(), "the management API, all streams")
    _stop_management(worker)
    actor_system.close_streams(system)


def _stop_management(worker) -> None:
    server, worker.grpc_server = getattr(worker, "grpc_server", None), None
    if server is not None:
        server.stop(grace=1)


def release_logging() -> None:
    """The worker's last step: flush the logs, then drop logging's weak references to its
    handlers. Otherwise, as the interpreter ends, each handler's finaliser takes logging's lock
    through gevent's already torn-down thread module and prints a traceback on every exit."""
    logging.shutdown()
    weak_refs = getattr(logging, "_handlerList", None)   # private; 3.11 to 3.13 have it
    if weak_refs is not None:
        weak_refs.clear()


def stop_in_worker(worker) -> None:
    """Idempotent: called on SIGINT/SIGQUIT (worker_int, while gevent still runs) and at exit."""
    _stop_management(worker)
    system, worker.sse_system = getattr(worker, "sse_system", None), None
    if system is not None:
        actor_system.stop(system)
