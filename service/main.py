"""What a gunicorn worker runs, started and stopped in one place (the composition root).

start_in_worker(worker), from post_worker_init: in order, the actor system, the gateway
attached to the app, the stuck-write checker, the shutdown watcher, the instance socket (with
several workers: the other workers ask this one through it), the gRPC management API.
Start-up is all-or-nothing (like Mopidy's server command): when a step fails, the steps
already done are undone in reverse and the error goes on (gunicorn then exits the worker).
stop_in_worker(worker), from worker_int / worker_exit: the same steps in reverse; idempotent.

SSE requests never end on their own, and gunicorn waits for open requests on SIGTERM: the
shutdown watcher sees `worker.alive` turn false (the worker's SIGTERM handler wakes it), lets
the gRPC port go first (after a SIGHUP the new worker, already started and retrying the bind,
takes the management API over) and then ends every stream.
"""
from __future__ import annotations

import gc
import hashlib
import logging
import os
import threading
from collections.abc import Callable

from actors import logs, system as actor_system
from actors.gateway import Gateway
from actors.instance import InstanceGateway
from actors.settings.warnings import auth_warnings
from actors.tally import TALLY_FILE, Tally
from service.dir_watch import DirWatch
from web.core import attach, write_checker

logger = logging.getLogger(__name__)

WATCH_INTERVAL = 0.2      # seconds between looks at worker.alive
ANNOUNCED = "announced-"    # + a digest of what was said: files in the instance directory
LAST_COUNTS_TIMEOUT = 0.5  # seconds a stopping worker gives its broker for its last counts
# seconds a starting worker gives the others for their counts: a draining worker in a
# reconnect storm answered GetStats in up to ~1 s (bench, storm rows)
JOIN_TIMEOUT = 2.0


class Service:
    """The running parts of one worker, each with the function that stops it."""

    def __init__(self, worker):
        self.worker = worker
        self.app = worker.wsgi
        self.settings = self.app.config["SETTINGS"]
        self.system: actor_system.System | None = None
        self.local: Gateway | None = None          # this worker's own gateway
        self.gateway: Gateway | InstanceGateway | None = None    # what the app and gRPC ask
        self.instance_dir = getattr(self.settings, "sse_instance_dir", "") or ""
        self.peer_server = None
        self.management = None
        self._undo: list[tuple[str, Callable[[], object]]] = []   # (what, its stop), in order
        self._look = threading.Event()     # set: the shutdown watcher looks at worker.alive now
        self._unwatched = False            # True: the shutdown watcher ends
        self._watcher: threading.Thread | None = None
        self._dir_watch = (DirWatch(self.instance_dir, getattr(worker, "ppid", 0))
                           if self.instance_dir else None)

    # -- start ------------------------------------------------------------------------------
    def start(self) -> "Service":
        try:
            self._start_core()
            self._start_edge()
        except BaseException:
            logger.critical("worker %d failed to start; stopping what was started", os.getpid())
            self.stop()
            raise
        return self

    def _start_core(self) -> None:
        system = actor_system.start(self.settings, on_fatal=self._retire)
        self.system = system
        self._done("actor system", lambda: actor_system.stop(system))
        self.local = self.gateway = local = Gateway.of(system)
        _announce_auth(local, self.instance_dir)
        if self.instance_dir:
            self.gateway = InstanceGateway(local, _peers(self.instance_dir),
                                           tally=Tally(os.path.join(self.instance_dir,
                                                                    TALLY_FILE)))
            self.gateway.join_tally(timeout=JOIN_TIMEOUT)
        attach(self.app, self.gateway)
        self._done("gateway", self._detach)

    def _start_edge(self) -> None:
        checker = write_checker(self.app).start()
        self._done("stuck-write checker", checker.stop)
        self._watcher = threading.Thread(target=self._watch_shutdown, name="shutdown-watch",
                                         daemon=True)
        self._watcher.start()
        self._done("shutdown watcher", self._stop_watcher)
        if self.instance_dir and self.local is not None:
            self.peer_server = _join_instance(self.local, self.instance_dir)
            self._done("instance socket", self._leave_instance)
        self.management = _start_management(self.settings, self.gateway,
                                            standby=bool(self.instance_dir),
                                            may_take=lambda: self.worker.alive,
                                            bind_lock=_bind_lock(self.instance_dir))
        self._done("management API", self._stop_management)

    def _done(self, what: str, stop: Callable[[], object]) -> None:
        self._undo.append((what, stop))

    # -- stop -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop what was started, last first; idempotent."""
        while self._undo:
            what, stop = self._undo.pop()
            try:
                stop()
            except Exception:  # noqa: BLE001 - keep stopping the rest
                logger.exception("stopping the %s failed", what)

    def _detach(self) -> None:
        if isinstance(self.gateway, InstanceGateway):
            self.gateway.keep_last_counts(timeout=LAST_COUNTS_TIMEOUT)
        attach(self.app, None)

    def _retire(self, reason: str) -> None:
        logger.critical("retiring worker %d: %s", os.getpid(), reason)
        self.worker.alive = False
        self.wake()

    def wake(self) -> None:
        """worker.alive may have changed (SIGTERM): the shutdown watcher looks at once."""
        self._look.set()

    def _watch_shutdown(self) -> None:
        """Also the instance directory's watch (DirWatch) while the worker runs."""
        while self.worker.alive:
            self._look.wait(WATCH_INTERVAL)
            self._look.clear()
            if self._unwatched:
                return
            if self._dir_watch is not None and self.worker.alive:
                try:
                    self._dir_watch.check()
                except Exception:  # noqa: BLE001 - the watcher must live on to drain
                    logger.exception("looking at the instance directory failed")
        logger.info("worker %d stopping: closing %s", os.getpid(),
                    "the management API, all streams")
        self._release_grpc_port()
        if self.system is not None:
            actor_system.close_streams(self.system, over=self.settings.sse_drain_seconds)
        self._leave_instance()      # the other workers listed and ended its streams till now

    def _stop_watcher(self) -> None:
        self._unwatched = True
        self._look.set()
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(2.0)

    def _stop_management(self) -> None:
        """The public port, then this worker's instance socket (the others stop asking it)."""
        self._release_grpc_port()
        self._leave_instance()

    def _release_grpc_port(self) -> None:
        management, self.management = self.management, None
        if management is not None:
            management.stop(grace=1)

    def _leave_instance(self) -> None:
        peer_server, self.peer_server = self.peer_server, None
        if peer_server is not None:
            peer_server.stop()


def _announce_auth(gateway: Gateway, instance_dir: str = "") -> None:
    """The start-up line of subscriber auth (never a secret) and its warnings, once per
    instance; the JWKS fetched now in the background rather than by the first request."""
    auth = gateway.auth
    lines = [(logging.INFO, "subscriber auth is off (AUTH_MODE=off): every client reads "
                            "every event")]
    if auth is not None:
        lines = [(logging.INFO, auth.describe())]
        lines += [(logging.WARNING, warning) for warning in auth_warnings(gateway.settings)]
    if _first_to_say(lines, instance_dir):
        for level, line in lines:
            logger.log(level, "%s", line)
    if auth is not None:
        auth.prefetch()


def _first_to_say(lines, instance_dir: str) -> bool:
    """True in the first worker of the instance to say these lines (a worker that replaces it
    says nothing; one that reads a changed .env after a reload does), and in a process of its
    own. A file named by their digest in the instance directory marks them said."""
    if not instance_dir:
        return True
    digest = hashlib.blake2b(repr(lines).encode(), digest_size=8).hexdigest()
    try:
        fd = os.open(os.path.join(instance_dir, ANNOUNCED + digest),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    except OSError:
        return True        # said twice rather than never
    os.close(fd)
    return True


def _bind_lock(instance_dir: str | None) -> str | None:
    """The file the instance's workers lock to try the gRPC port one at a time."""
    return os.path.join(instance_dir, "grpc-bind.lock") if instance_dir else None


def _start_management(settings, gateway, standby: bool = False, may_take=None,
                      bind_lock: str | None = None):
    try:
        from rpc.server import start_management
    except ImportError as exc:
        logger.error("management API not started: %s (is the package installed whole?)", exc)
        return None
    # Keeps retrying while the port is busy: after a SIGHUP the old worker still holds it;
    # with several workers one holds it and the others stand by.
    return start_management(settings, gateway, standby=standby, may_take=may_take,
                            bind_lock=bind_lock)


def _peers(instance_dir: str):
    from rpc.peers import Peers
    return Peers(instance_dir)


def _join_instance(local: Gateway, instance_dir: str):
    """Serve this worker's gateway on its socket in the instance directory; None (logged)
    when that fails: the worker still serves its streams, but the instance cannot see them."""
    from rpc.peers import PeerServer, socket_path
    try:
        return PeerServer(local, socket_path(instance_dir)).start()
    except OSError as exc:
        logger.error("worker %d could not join the instance: %s; GetClients, /stats and "
                     "DisconnectClient miss its streams until it is replaced (check that %s "
                     "is writable)", os.getpid(), exc, instance_dir)
        return None


def _tune_gc() -> None:
    """Fewer, cheaper collections: with thousands of streams, each full collection walks
    every greenlet and actor and stalls every stream for tens of milliseconds."""
    gc.collect()
    gc.freeze()                       # what exists after start-up is never collected
    gc.set_threshold(50_000, 20, 100)


def start_in_worker(worker) -> Service:
    settings = worker.wsgi.config["SETTINGS"]
    logs.configure(settings)
    from web.metrics import unrecorded
    if (no_room := unrecorded()) is not None:
        logger.error(no_room)
    service = Service(worker).start()
    worker.sse_service = service
    _tune_gc()
    return service


def stop_in_worker(worker) -> None:
    """Idempotent: called on SIGINT/SIGQUIT (worker_int, while gevent still runs) and at exit."""
    service, worker.sse_service = getattr(worker, "sse_service", None), None
    if service is not None:
        service.stop()


def release_logging() -> None:
    """The worker's last step: flush the logs, then drop logging's weak references to its
    handlers. Otherwise, as the interpreter ends, each handler's finaliser takes logging's lock
    through gevent's already torn-down thread module and prints a traceback on every exit."""
    logging.shutdown()
    weak_refs = getattr(logging, "_handlerList", None)   # private; 3.11 to 3.13 have it
    if weak_refs is not None:
        weak_refs.clear()
