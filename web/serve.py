"""How gunicorn runs the gateway: its settings and hooks, in one place.

Both ways of starting it use this module: the console script (`kafka-sse-gateway`, web/cli.py)
and `gunicorn -c gunicorn.conf.py` (the file only applies `gunicorn_config()`).

gunicorn runs WORKERS workers, each with its own actors and Kafka reader. Before forking them
the master makes the instance directory they share (web/instance_dir.py); it goes when the
master exits.

gunicorn's master is not patched by gevent: nothing here may import kafka, pykka, grpc or the
app at module level; the hooks import what they need inside the worker.
"""
from __future__ import annotations

import atexit
import errno
import functools
import hashlib
import importlib
import importlib.util
import logging
import os
import socket
import sys
from pathlib import Path

from actors.logs import error_line, gunicorn_logconfig
from actors.settings import (
    INSTANCE_DIR, Settings, SettingsError, changed_variables, env_file_warnings, raw_value,
)
from actors.settings.warnings import master_warnings, settings_warnings
from web import clocks, instance_dir

WSGI_APP = "web.wsgi:app"
WORKER_CLASS = "web.worker.GatewayWorker"
LOGGER_CLASS = "web.gunicorn_log.RedactingLogger"   # its access log, if turned on, masks tickets

_applied = False   # set in the master; a forked worker inherits it (web/wsgi.py checks it)
_settings: Settings | None = None    # what gunicorn_config() was given: the master's, the workers'
_replaced: Settings | None = None    # the settings a SIGHUP's gunicorn_config() replaced
_instance_dir = ""                   # made by this master's on_starting, removed by on_exit


def hooks_applied() -> bool:
    """True when this process (or its master) runs with gunicorn_config()."""
    return _applied


def worker_settings() -> Settings | None:
    """In a worker, the settings its master read (inherited across the fork) with the instance
    directory the master made; None outside gunicorn_config(). A worker never reads .env
    itself: after an edit, a replaced worker would run values the others do not, and a bad
    one would fail its boot, which makes gunicorn halt the whole instance."""
    if _settings is None:
        return None
    return _settings.replace(sse_instance_dir=os.environ.get(INSTANCE_DIR, "").strip())


BACKLOG = 8192
GRACE_AFTER_DRAIN = 10       # seconds a worker has to exit after its drain
LIMIT_REQUEST_LINE = 8190     # bytes of a request line (gunicorn's most), like a header line


def gunicorn_config(settings: Settings | None = None) -> dict:
    """gunicorn's settings and hooks for the gateway, from `settings` (default: the environment
    and .env, read again on every SIGHUP)."""
    global _applied, _settings, _replaced
    settings = settings or _read_settings()
    _applied, _settings, _replaced = True, settings, _settings
    return _config(settings)


def _config(settings: Settings) -> dict:
    """gunicorn's settings and hooks for `settings` (nothing recorded)."""
    return {
        "wsgi_app": WSGI_APP,
        "bind": bind_addresses(settings),
        # gunicorn's gevent worker plus a time limit and per-address cap for unfinished
        # requests (web/worker.py). A dotted path: the class is imported when the master starts.
        "worker_class": WORKER_CLASS,
        # Each worker runs its own actors and Kafka reader; the limits, the management API,
        # /stats and /metrics are the instance's (the instance directory, on_starting).
        "workers": settings.workers,
        # Per worker. gevent's default of 1000 would silently cap SSE_MAX_CLIENTS, and any one
        # worker may end up holding all of them. The worker adds room for HTTP_MAX_PENDING
        # unfinished requests on top.
        "worker_connections": settings.sse_max_clients + 200,
        # A reconnect storm queues thousands of connections before a worker accepts them; the
        # kernel caps this at net.core.somaxconn (gunicorn's default: 2048).
        "backlog": BACKLOG,
        "keepalive": 0,
        # The most gunicorn takes (its default: 4,094), as much as a header line: the ticket
        # recipe sends the resume id in the URL, thousands of characters at 1,000 partitions.
        "limit_request_line": LIMIT_REQUEST_LINE,
        # gunicorn believes SCRIPT_NAME and PATH_INFO request headers from its
        # forwarded_allow_ips (loopback by default): behind a same-host or sidecar proxy, any
        # client could move the routes or make a 500. No proxy of ours sets them; a mount
        # point is gunicorn's SCRIPT_NAME environment variable.
        "forwarder_headers": "",
        "timeout": 30,
        # SIGTERM: the drain, then the Kafka consumer's close (~5 s with Kafka down), before
        # gunicorn kills a worker that has not exited.
        "graceful_timeout": settings.sse_drain_seconds + GRACE_AFTER_DRAIN,
        "control_socket_disable": True,
        "preload_app": False,
        "accesslog": None,
        "logger_class": LOGGER_CLASS,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "logconfig_dict": gunicorn_logconfig(settings),   # LOG_FORMAT=json: gunicorn's too
        "on_starting": on_starting,
        "on_reload": on_reload,
        "nworkers_changed": nworkers_changed,
        "post_worker_init": post_worker_init,
        "worker_int": worker_int,
        "worker_exit": worker_exit,
        "child_exit": child_exit,
        "on_exit": on_exit,
    }


def _read_settings() -> Settings:
    """The environment's settings; on a SIGHUP with a bad value, or a new address the master
    cannot listen on (gunicorn would close the old one, retry and exit), the running ones."""
    settings, problem = _reread()
    if problem is not None:
        _refused(problem)
    return settings


def _reread() -> tuple[Settings, str | None]:
    """The environment's settings, or the running ones and why a running master refuses the
    new ones (at the start a bad value raises: the caller says it). In a running master
    nothing raises: an exception would reach gunicorn's main loop, which ends the instance."""
    if not _instance_dir or _settings is None:
        return Settings.from_env(), None
    try:
        return _checked_again(_settings)
    except SettingsError as exc:
        return _settings, str(exc)
    except Exception as exc:  # noqa: BLE001 - unforeseen: said with its traceback, and kept
        logging.getLogger("gunicorn.error").error("SIGHUP: reading the settings again failed",
                                                  exc_info=True)
        return _settings, f"{type(exc).__name__}: {exc}"[:500]


def _checked_again(running: Settings) -> tuple[Settings, str | None]:
    settings = Settings.from_env()
    held = bind_addresses(running)
    problems = [*_rebind_problems(settings, held), *listen_problems(settings, held=held),
                *_room_problems(settings, running)]
    if problems:
        return running, "; ".join(problems)
    return settings, None


def _rebind_problems(settings: Settings, held: list[str]) -> list[str]:
    """gunicorn closes and binds every listener again when a SIGHUP changes the list, while
    the old workers still hold the ones kept: binding those fails, and the master exits."""
    wanted = bind_addresses(settings)
    kept = [address for address in wanted if address in held]
    if wanted == held or not kept:
        return []
    return [f"the listeners would change from {', '.join(held)} to {', '.join(wanted)}, "
            f"keeping {', '.join(kept)}, which gunicorn cannot bind again while the old "
            f"workers hold it: restart the gateway to change HTTP_PORT, ADMIN_PORT or their "
            f"hosts while the other listener stays"]


def _room_problems(settings: Settings, running: Settings) -> list[str]:
    """A new limits file (SSE_MAX_CLIENTS changed) that the instance directory has no room
    for, beside the old one its workers still map."""
    shared_limits = importlib.import_module("actors.shared_limits")
    path = os.path.join(_instance_dir, shared_limits.LIMITS_FILE)
    if shared_limits.fits(path, settings) or not shared_limits.fits(path, running):
        return []
    needed, free = shared_limits.size(settings), instance_dir.free_bytes(_instance_dir)
    if needed <= free:
        return []
    return [f"SSE_MAX_CLIENTS={settings.sse_max_clients} needs a limits file of "
            f"{needed // 1024} KiB and {_instance_dir} has {free // 1024} KiB free: give "
            f"{os.path.dirname(_instance_dir)} more room (docker run --shm-size) or lower "
            f"SSE_MAX_CLIENTS"]


def _refused(problem: str, kept: str = "the running settings",
             then: str = "fix it and send SIGHUP again") -> None:
    logging.getLogger("gunicorn.error").error("SIGHUP: %s; kept %s: %s", problem, kept, then)


def _hang_up(reload) -> None:
    """SIGHUP in the master: gunicorn's reload (`reload`), unless the settings read again are
    refused; gunicorn would replace every worker with the running ones, ending each stream
    for nothing and sending every client back at once. Nor when the code on disk changed:
    the new workers would fail to boot, and gunicorn would halt the instance."""
    changed = _code_changed()
    if changed:
        _refused(changed, "the running code, settings and workers",
                 "restart the instance soon to run the new code (or SIGUSR2: a new master "
                 "beside this one, then SIGTERM to this one)")
        return
    _, problem = _reread()
    if problem is not None:
        _refused(problem, "the running settings and the workers")
    elif _heal_instance_dir(logging.getLogger("gunicorn.error"), "the new workers share it"):
        reload()
    else:       # new workers could not attach to it: gunicorn would halt the instance
        _refused("the instance directory could not be made again", "the running workers",
                 "restart the instance")


def _code_roots() -> list[Path]:
    """The gateway's packages, where they are installed."""
    specs = [importlib.util.find_spec(name) for name in ("actors", "web", "rpc", "service")]
    return [Path(spec.origin).parent for spec in specs if spec is not None and spec.origin]


def _code_digests() -> dict[str, bytes]:
    """Every .py file of the packages (as package/path) and a digest of its content (one that
    cannot be read, removed mid-upgrade, is a change)."""
    return {str(path.relative_to(root.parent)): _digest(path)
            for root in _code_roots() for path in root.rglob("*.py")}


def _digest(path: Path) -> bytes:
    try:
        return hashlib.blake2b(path.read_bytes()).digest()
    except OSError:
        return b"unreadable"


_code_at_start: dict[str, bytes] | None = None      # on_starting's _code_digests()


def _code_changed() -> str | None:
    """What changed in the code since on_starting, or None. A worker forked from this master
    has the master's modules and would import the rest anew: the two would not fit."""
    if _code_at_start is None:
        return None
    now = _code_digests()
    changed = sorted(name for name in now.keys() | _code_at_start.keys()
                     if now.get(name) != _code_at_start.get(name))
    if not changed:
        return None
    shown = ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else "")
    return (f"the gateway's code changed on disk since this instance started "
            f"({len(changed)} file{'s' if len(changed) > 1 else ''}: {shown}); new workers "
            f"cannot run it beside this master's copy (they would fail to boot, and gunicorn "
            f"would stop the instance; so would a worker started in place of one that ends)")


def bind_addresses(settings: Settings) -> list[str]:
    """The public address, then the admin listener's when ADMIN_PORT is set."""
    addresses = [_address(settings.http_host, settings.http_port)]
    if settings.admin_port:
        addresses.append(_address(settings.admin_host, settings.admin_port))
    return addresses


def _address(host: str, port: int) -> str:
    """host:port, an IPv6 host in brackets (gunicorn reads `::1:8084` as a port-less host)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


# gunicorn settings the gateway depends on, and the variable that sets each (None: none may)
PINNED = {"bind": "HTTP_HOST, HTTP_PORT, ADMIN_HOST, ADMIN_PORT", "workers": "WORKERS",
          "worker_connections": "SSE_MAX_CLIENTS", "worker_class": None, "wsgi_app": None,
          "preload_app": None, "logger_class": None, "forwarder_headers": None,
          # -e NAME=value reaches the workers' environment after the settings were read
          "raw_env": "the environment or .env, where the settings are read"}


def overridden(cfg, settings: Settings) -> list[str]:
    """The PINNED gunicorn settings that GUNICORN_CMD_ARGS or command-line flags changed
    after gunicorn.conf.py gave the gateway's."""
    ours, found = {"raw_env": [], **_config(settings)}, []
    for key, variable in PINNED.items():
        setting = cfg.settings[key]
        wanted, actual = setting.validator(ours[key]), setting.get()
        if actual != wanted and key == "raw_env":       # its values may be secrets
            found.append(" ".join(f"-e {entry.partition('=')[0]}" for entry in actual)
                         + f" ({variable})")
        elif actual != wanted:
            found.append(f"{key} {actual!r} instead of {wanted!r}"
                         + (f" ({variable})" if variable else ""))
    return found


def refusal(program: str, exc: SettingsError) -> str:
    """The lines that refuse a start: the .env lines that may explain it, then the error, as
    LOG_FORMAT asks."""
    log_format = raw_value("LOG_FORMAT")
    return "\n".join([*(error_line(program, warning, log_format, logging.WARNING)
                         for warning in env_file_warnings()),
                       error_line(program, str(exc), log_format)])


# -- hooks --------------------------------------------------------------------------------
def stop_on_monotonic(stop, graceful: bool = True) -> None:
    """gunicorn's Arbiter.stop, which gives the workers graceful_timeout by the wall clock: a
    step forward during a drain SIGKILLed every worker at once, one back held a hung worker
    for the step's length. It runs with the monotonic clock as its time.time()."""
    from gunicorn import arbiter
    wall = arbiter.time
    arbiter.time = clocks.MONOTONIC
    try:
        stop(graceful)
    finally:
        arbiter.time = wall


def on_starting(server):
    """In the master, before any socket or worker: the instance directory the workers share."""
    global _code_at_start
    settings = _settings or Settings.from_env()
    _code_at_start = _code_digests()
    if hasattr(server, "handle_hup"):
        server.handle_hup = functools.partial(_hang_up, server.handle_hup)
    if hasattr(server, "stop"):
        server.stop = functools.partial(stop_on_monotonic, server.stop)
    _refuse_a_bad_start(server, settings)
    for warning in master_warnings(settings):   # once, not per worker
        server.log.warning("%s", warning)
    # gRPC's core logs lines of its own format, at ERROR too, for what a stranger sends (a
    # failed TLS handshake, a malformed HTTP/2 header): anyone who reaches GRPC_PORT could fill
    # the disk. What goes wrong for the gateway, the Python API raises (an operator may ask)
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    _prepare_instance_dir(server, settings)


def _refuse_a_bad_start(server, settings: Settings) -> None:
    """Exit 1, saying why, when gunicorn flags changed what the gateway needs or an address
    cannot be listened on."""
    changed = overridden(server.cfg, settings) if hasattr(server.cfg, "settings") else []
    if changed:
        server.log.error("gunicorn settings given besides gunicorn.conf.py (GUNICORN_CMD_ARGS, "
                         "the command line or another config file) changed what the gateway "
                         "needs: %s; set the variable named instead (README, Configuration) "
                         "and drop the flag", "; ".join(changed))
        sys.exit(1)
    if _sockets_handed_over():
        return
    problems = listen_problems(settings)
    for problem in problems:
        server.log.error("%s", problem)
    if problems:
        sys.exit(1)
    warning = grpc_problem(settings)
    if warning:
        server.log.warning("%s", warning)


def _prepare_instance_dir(server, settings: Settings) -> None:
    """Make the instance directory with its limits (and nonces) files, removed at exit."""
    global _instance_dir
    needed = instance_dir.instance_room(settings, server.cfg.workers)
    try:
        path = instance_dir.make_instance_dir(needed)
    except instance_dir.InstanceDirError as exc:
        server.log.error("%s", exc)
        sys.exit(1)
    _instance_dir = path
    shm = instance_dir.shared_memory()
    if shm and os.path.dirname(path) != shm:
        server.log.warning("%s has %d KiB free, under the %d KiB the instance directory needs "
                           "(its files are mapped in memory: writing one on a full %s kills "
                           "the worker with SIGBUS): it is in %s instead; give %s more room "
                           "(docker run --shm-size)", shm, instance_dir.free_bytes(shm) // 1024,
                           needed // 1024, shm, os.path.dirname(path), shm)
    try:
        instance_dir.create_shared_limits(path, settings)
        if settings.auth_mode != "off":
            instance_dir.create_ticket_nonces(path)
    except OSError as exc:
        instance_dir.remove_instance_dir(path)
        server.log.error("cannot make the instance's shared files in %s (%s): they need %d KiB; "
                         "give %s the room (docker run --shm-size) or set TMPDIR to a "
                         "directory with room", os.path.dirname(path), exc.strerror or exc,
                         needed // 1024, shm or "/dev/shm")
        sys.exit(1)
    except BaseException:
        instance_dir.remove_instance_dir(path)
        raise
    # on_exit does not run when the start fails later (a port in use): the dir goes anyway
    atexit.register(instance_dir.remove_if_master, os.getpid(), path)
    server.log.info("%d workers share the instance directory %s", server.cfg.workers, path)


def on_reload(server):
    """SIGHUP, in the master, after the settings were read again and before the new workers
    start: a misspelt variable of the edited .env is named, as at the start, and a limits file
    whose tables no longer fit SSE_MAX_CLIENTS is made anew for them. Nothing raises: in
    gunicorn's reload an exception ends the instance."""
    try:
        _on_reload(server)
    except Exception:  # noqa: BLE001 - the new workers start all the same; said in full
        logging.getLogger("gunicorn.error").error("SIGHUP: after reading the settings again",
                                                  exc_info=True)


def _on_reload(server) -> None:
    _say_reload_warnings(server)
    if _settings is not None and _replaced is not None:
        changed = changed_variables(_replaced, _settings)
        if changed:
            server.log.info("SIGHUP: taking the new settings of %s", ", ".join(changed))
        else:
            server.log.info("SIGHUP: no setting changed; new workers replace the old ones")
    path = os.environ.get(INSTANCE_DIR, "")
    if path and _settings is not None:
        _renew_shared_files(server, path, _settings)


def _heal_instance_dir(log, then: str) -> bool:
    """The instance directory made again when it was removed under the running instance,
    before new workers start (they need its limits file); False when it could not be."""
    path, settings = os.environ.get(INSTANCE_DIR, ""), _settings
    gone = instance_dir.missing(path) if path and settings is not None else None
    if gone is None or settings is None:
        return True
    try:
        instance_dir.remake(path, settings)
    except OSError as exc:
        log.error("%s was removed under the running instance and cannot be made again (%s): "
                  "new workers could not start; restart the instance", gone,
                  exc.strerror or exc)
        return False
    log.warning("%s was removed under the running instance (by a cleaner of %s, or "
                "systemd-logind's RemoveIPC=yes?): made again; %s", gone,
                os.path.dirname(path), then)
    return True


def _say_reload_warnings(server) -> None:
    try:
        found = master_warnings(_settings)
    except SettingsError:           # an unreadable .env: _read_settings said so, and kept
        found = settings_warnings(_settings) if _settings is not None else []
    # a port another process took; the running one the old workers still hold (on whatever
    # host) is ours
    settings = _settings
    moved = settings is not None and (_replaced is None
                                      or settings.grpc_port != _replaced.grpc_port)
    grpc_warning = grpc_problem(settings) if settings is not None and moved else ""
    for warning in [*found, *([grpc_warning] if grpc_warning else [])]:
        server.log.warning("SIGHUP: %s", warning)


def _renew_shared_files(server, path: str, settings: Settings) -> None:
    """A limits file whose tables no longer fit SSE_MAX_CLIENTS is made anew; with auth
    turned on, a nonces file (one there is kept)."""
    shared_limits = importlib.import_module("actors.shared_limits")
    if not shared_limits.fits(os.path.join(path, shared_limits.LIMITS_FILE), settings):
        try:
            instance_dir.create_shared_limits(path, settings, carry=True)
        except OSError as exc:      # room checked by _read_settings; taken meanwhile
            server.log.error("SIGHUP: cannot make the limits file for SSE_MAX_CLIENTS=%d (%s): "
                             "the new workers share the running one, sized for fewer streams",
                             settings.sse_max_clients, exc.strerror or exc)
        else:
            server.log.info("SSE_MAX_CLIENTS=%d: the new workers share a new limits file",
                            settings.sse_max_clients)
    if settings.auth_mode != "off":
        instance_dir.create_ticket_nonces(path)


def nworkers_changed(server, new_value, old_value):
    """SIGTTIN past the workers the shared limits hold, with as many again that a SIGHUP starts
    beside them: a worker without a slot fails its boot, and gunicorn then halts the whole
    instance. The count stays at the most, said."""
    most = importlib.import_module("actors.shared_limits").SLOTS // 2
    if new_value is not None and new_value > most:
        server.log.error("SIGTTIN: %d workers at most (the shared limits hold %d processes, "
                         "and a SIGHUP starts as many again beside them); staying at %d",
                         most, 2 * most, most)
        server.num_workers = most


def child_exit(server, worker):
    """In the master, after a worker ended (or was killed): forget its live metrics and socket,
    and fold its metric files (histogram, counter) into the ended workers' ones; an instance
    directory removed meanwhile is made again first, for its replacement. Nothing raises: in
    gunicorn's master an exception here ends the instance."""
    try:
        _child_exit(server, worker)
    except Exception:  # noqa: BLE001 - the instance goes on; said in full
        logging.getLogger("gunicorn.error").error("after worker %d ended", worker.pid,
                                                  exc_info=True)


def _child_exit(server, worker) -> None:
    path = os.environ.get(INSTANCE_DIR, "")
    if not path:
        return
    _heal_instance_dir(server.log, "workers started from now on share it, the running ones "
                       "keep their own copies (the instance's limits and figures split between "
                       "them): send SIGHUP to the master to replace them")
    from prometheus_client import multiprocess   # here: the master's environment is set by now

    from web import metrics_files
    multiprocess.mark_process_dead(worker.pid, os.path.join(path, instance_dir.METRICS))
    metrics_files.retire(os.path.join(path, instance_dir.METRICS), worker.pid)
    for name in (f"{worker.pid}.sock", f"{worker.pid}.sock.joining"):   # rpc/peers.py
        Path(path, instance_dir.PEERS, name).unlink(missing_ok=True)


def on_exit(server):
    global _instance_dir
    instance_dir.remove_instance_dir(_instance_dir)
    _instance_dir = ""


# -- the addresses the master listens on ---------------------------------------------------
def listen_problems(settings: Settings, held=()) -> list[str]:
    """Why the master could not listen (a port in use, a host not of this machine), one line
    per address naming its variable: said at once, where gunicorn retries for five seconds.
    The management API's address counts too unless its port is merely in use (grpc_problem).
    `held`: addresses this master listens on already (a SIGHUP), not checked."""
    problems = []
    ours = {address.rsplit(":", 1)[1]: address for address in held}    # port -> address
    for prefix, host, port in _listeners(settings):
        if _address(host, port) in held:
            continue
        try:
            _try_bind(host, port)
        except OSError as exc:
            ours_in_use = exc.errno == errno.EADDRINUSE and str(port) in ours
            problems.append(_listen_problem(prefix, host, port, exc) if not ours_in_use
                            else f"{prefix}_HOST={host}: port {port} is this gateway's own (it "
                                 f"listens on {ours[str(port)]}), which a SIGHUP cannot move to "
                                 f"another host: restart the gateway to change {prefix}_HOST")
    grpc_error = _grpc_bind_error(settings)
    if grpc_error is not None and grpc_error.errno != errno.EADDRINUSE:
        problems.append(_listen_problem("GRPC", settings.grpc_host, settings.grpc_port,
                                        grpc_error))
    return problems


def grpc_problem(settings: Settings) -> str:
    """The management API's port held by another process: a warning, since a worker that finds
    it taken retries until it is free (or stands by, taking it for another worker's)."""
    exc = _grpc_bind_error(settings)
    if exc is None or exc.errno != errno.EADDRINUSE:
        return ""
    return (_listen_problem("GRPC", settings.grpc_host, settings.grpc_port, exc)
            + "; the streams are served meanwhile, the management API once it is free")


def _grpc_bind_error(settings: Settings) -> OSError | None:
    if not settings.grpc_port:
        return None
    try:
        _try_bind(settings.grpc_host, settings.grpc_port)
    except OSError as exc:
        return exc
    return None


def _sockets_handed_over() -> bool:
    """Listening sockets inherited from an old master (USR2) or systemd: ours already."""
    return "GUNICORN_FD" in os.environ or "LISTEN_FDS" in os.environ


def _listeners(settings: Settings):
    yield "HTTP", settings.http_host, settings.http_port
    if settings.admin_port:
        yield "ADMIN", settings.admin_host, settings.admin_port


def _try_bind(host: str, port: int) -> None:
    """A bind as gunicorn makes it (SO_REUSEADDR), given back at once."""
    bare = host.strip("[]")
    with socket.socket(socket.AF_INET6 if ":" in bare else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((bare, port))


def _listen_problem(prefix: str, host: str, port: int, exc: OSError) -> str:
    where = _address(host, port)
    if exc.errno == errno.EADDRINUSE:
        return (f"{prefix}_PORT={port}: {where} is in use by another process: stop it or "
                f"choose another {prefix}_PORT")
    if exc.errno == errno.EACCES:
        return (f"{prefix}_PORT={port}: not allowed to listen on {where} (ports below 1024 "
                f"need CAP_NET_BIND_SERVICE): choose another {prefix}_PORT")
    return (f"{prefix}_HOST={host!r}: cannot listen on it ({exc.strerror or exc}): set an "
            f"address of this machine (0.0.0.0 for all of them)")


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
