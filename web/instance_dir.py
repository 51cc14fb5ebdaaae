"""The instance directory the workers of one gunicorn master share (SSE_INSTANCE_DIR): made by
the master before it forks them (in /dev/shm when there is one, 0700), held while they run,
removed when it exits, swept when a master left one behind.

What it holds:
- `master.lock`: flock'd by the master and its workers while they run (OWNER_LOCK);
- `limits`: the instance-wide limits (actors/shared_limits.py);
- `nonces`: the spent tickets, with auth (actors/auth/shared_nonces.py);
- `ticket-secret`, `counters.json` (actors/tally.py), `grpc-bind.lock` and `announced-*`
  (service/main.py): what the workers agree on among themselves;
- `peers/`: one socket per worker, through which the others ask it (rpc/peers.py);
- `metrics/`: PROMETHEUS_MULTIPROC_DIR.

Pure: the master imports it before any patching.
"""
from __future__ import annotations

import errno
import fcntl
import importlib
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from actors.settings import INSTANCE_DIR, Settings

METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"   # prometheus_client's multiprocess mode reads it
DIR_PREFIX = "kafka-sse-"                  # the instance directory: kafka-sse-<master pid>-...
WORKER_ROOM = 1 << 20      # bytes a worker writes there, about (metrics, tallies, its socket)
PEERS, METRICS = "peers", "metrics"       # and actors.shared_limits.LIMITS_FILE
OWNER_LOCK = "master.lock"      # held (flock) by the master and its workers while they run
# bytes of a Unix socket's path (sun_path; Linux needs no NUL; macOS has 104)
SOCKET_PATH_MOST = 104 if sys.platform == "darwin" else 108
LONGEST_SOCKET = "4194304.sock.joining"     # a worker's (rpc/peers.py), of the largest pid
_owner_lock: int | None = None  # this master's fd of its OWNER_LOCK
_owned = ""                     # this master's instance directory


class InstanceDirError(Exception):
    """No instance directory the workers could use; the message says what to do."""


def make_instance_dir(needed: int = 0) -> str:
    """A private directory (0700) for this master's workers, in memory (/dev/shm) when the
    machine has it with `needed` bytes free; its path goes to the workers as
    SSE_INSTANCE_DIR. Also the metrics' (PROMETHEUS_MULTIPROC_DIR) and the peers' sockets'
    directories inside it. The master holds OWNER_LOCK in it (its workers inherit the lock)
    until they all end: that, not a pid, tells another master that it is in use."""
    global _owner_lock, _owned
    shm = shared_memory()
    parent = shm if shm and free_bytes(shm) >= needed else _temporary_dir()
    remove_stale_dirs(parent)
    path = tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-", dir=parent)   # mode 0700
    longest = len(os.fsencode(os.path.join(path, PEERS, LONGEST_SOCKET)))
    if longest > SOCKET_PATH_MOST:
        shutil.rmtree(path, ignore_errors=True)
        raise InstanceDirError(
            f"the instance directory {path} is too long for the workers' Unix sockets "
            f"({longest} bytes of the {SOCKET_PATH_MOST} a socket's path may have): set TMPDIR "
            f"to a shorter directory (or give /dev/shm the room, --shm-size)")
    _owner_lock, _owned = _hold(os.path.join(path, OWNER_LOCK)), path
    for sub in (PEERS, METRICS):
        os.mkdir(os.path.join(path, sub), 0o700)
    os.environ[INSTANCE_DIR] = path
    os.environ[METRICS_DIR] = os.path.join(path, METRICS)
    return path


def _temporary_dir() -> str:
    """tempfile's directory, but never the working directory it falls back to."""
    preset = tempfile.tempdir           # gettempdir() sets it to what it found
    try:
        found = tempfile.gettempdir()
    except FileNotFoundError:
        found = ""
    asked = (preset, *(os.environ.get(name) for name in ("TMPDIR", "TEMP", "TMP")),
             "/tmp", "/var/tmp", "/usr/tmp")                 # tempfile's, before the last
    if not found or os.path.realpath(found) not in {os.path.realpath(p) for p in asked if p}:
        raise InstanceDirError(
            "no writable directory for the instance's shared files: /dev/shm, /tmp and "
            "/var/tmp are not writable (or lack room): make one of them writable, or set "
            "TMPDIR to a writable directory")
    return found


def _hold(path: str) -> int:
    """A new lock file at `path`, held: locked under another name, then moved in place, so
    that no other master ever finds it there unheld."""
    draft = f"{path}.{os.getpid()}"
    fd = os.open(draft, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.rename(draft, path)
    return fd


def instance_room(settings: Settings, workers: int) -> int:
    """Bytes the instance directory needs: the limits file, the used tickets' table (with
    auth), and room for every worker twice over (a SIGHUP starts the new ones beside the old)."""
    shared_limits = importlib.import_module("actors.shared_limits")   # pure: no pykka, no kafka
    nonces = _ticket_nonces().SIZE if settings.auth_mode != "off" else 0
    return shared_limits.size(settings) + nonces + 2 * max(1, workers) * WORKER_ROOM


def free_bytes(path: str) -> int:
    try:
        found = os.statvfs(path)
    except OSError:
        return 0
    return found.f_bavail * found.f_frsize


def shared_memory() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def remove_stale_dirs(parent: str) -> None:
    """Instance directories of masters that died without their on_exit (SIGKILL): whose
    OWNER_LOCK no process holds (a pid tells nothing across pid namespaces, where every
    container's master is pid 1). Nothing without the gateway's own files is touched."""
    for path in Path(parent).glob(f"{DIR_PREFIX}*-*"):
        try:
            if path.is_symlink() or path.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if _unheld(path / OWNER_LOCK) or _left_by_old_version(path):
            shutil.rmtree(path, ignore_errors=True)


def _unheld(lock: Path) -> bool:
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False            # none: not one of ours (or an older version's, below)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False            # held: its master (or a worker of it) is running
    finally:
        os.close(fd)


def _left_by_old_version(path: Path) -> bool:
    """A directory made before OWNER_LOCK: its peers and metrics folders, its master gone."""
    pid = path.name.removeprefix(DIR_PREFIX).split("-")[0]
    return (not (path / OWNER_LOCK).exists() and (path / PEERS).is_dir()
            and (path / METRICS).is_dir() and pid.isdigit() and not _alive(int(pid)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process
        pass
    return True


def remove_if_master(master_pid: int, path: str) -> None:
    """At the interpreter's exit, in the master only (workers inherit its atexit list)."""
    if os.getpid() == master_pid:
        remove_instance_dir(path)


def remove_instance_dir(path: str) -> None:
    global _owner_lock, _owned
    if path:
        shutil.rmtree(path, ignore_errors=True)
    if _owner_lock is not None and path == _owned:
        os.close(_owner_lock)       # the workers' copies hold it until they end
        _owner_lock, _owned = None, ""
    for name in (INSTANCE_DIR, METRICS_DIR):
        if path and os.environ.get(name, "").startswith(path):
            del os.environ[name]


def missing(path: str) -> str | None:
    """What of the instance directory at `path` is gone (the directory itself, or a part every
    worker needs), or None while it is whole. A cleaner of /tmp or /dev/shm, or systemd-logind's
    RemoveIPC=yes, can remove it under a running instance."""
    shared_limits = importlib.import_module("actors.shared_limits")   # pure: no pykka, no kafka
    if not os.path.isdir(path):
        return path
    for name in (OWNER_LOCK, shared_limits.LIMITS_FILE, PEERS, METRICS):
        if not os.path.exists(os.path.join(path, name)):
            return os.path.join(path, name)
    return None


def remake(path: str, settings: Settings) -> None:
    """Make the instance directory at `path` whole again, in the master: the directory (a
    private one, as the first: one another user made at that path meanwhile is refused), its
    owner lock (held anew), its folders, its limits file (and the nonces', with auth). Workers
    started after this share it; the running ones keep what was removed. OSError when it
    cannot be made."""
    global _owner_lock, _owned
    for folder in (path, os.path.join(path, PEERS), os.path.join(path, METRICS)):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            _check_private(folder)
    lock = os.path.join(path, OWNER_LOCK)
    if not os.path.exists(lock):
        held = _hold(lock)
        if _owner_lock is not None and _owned == path:
            os.close(_owner_lock)
        _owner_lock, _owned = held, path
    shared_limits = importlib.import_module("actors.shared_limits")
    if not os.path.exists(os.path.join(path, shared_limits.LIMITS_FILE)):
        create_shared_limits(path, settings)
    if settings.auth_mode != "off":
        create_ticket_nonces(path)


def _check_private(folder: str) -> None:
    """A folder found where the instance directory's was: used only when it is one of this
    user's, not a link, open to nobody else (no one else can then have put anything in it)."""
    found = os.lstat(folder)
    if (not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid()
            or stat.S_IMODE(found.st_mode) & 0o077):
        raise PermissionError(errno.EPERM, "made again meanwhile by another user, or open to "
                              "others: not used", folder)


def create_ticket_nonces(path: str) -> None:
    """The table of spent tickets the workers share (actors/auth/shared_nonces.py)."""
    nonces = _ticket_nonces()
    file = os.path.join(path, nonces.NONCES_FILE)
    if not os.path.exists(file):
        nonces.create(file)


def _ticket_nonces():
    return importlib.import_module("actors.auth.shared_nonces")      # pure: the standard library


def create_shared_limits(path: str, settings: Settings, carry: bool = False) -> None:
    """The file behind the instance-wide limits (actors/shared_limits.py); workers attach.
    `carry`: a SIGHUP's new file goes on counting evicted buckets from the one it replaces."""
    shared_limits = importlib.import_module("actors.shared_limits")   # pure: no pykka, no kafka
    file = os.path.join(path, shared_limits.LIMITS_FILE)
    carried = {"evicted": shared_limits.evicted_in(file)} if carry else {}
    shared_limits.create(file, settings, **carried)
