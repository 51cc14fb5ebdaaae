"""The Go load generator (bench/lg_go/) behind the interface of bench.py's `Child`.

bench/lg_go is bench/loadgen.py in Go: the same commands, the same books, the same messages,
at a fraction of the CPU (an event costs a scan of its bytes instead of Python objects). The
Go process reads the commands as JSON lines on stdin and writes its messages as JSON lines on
stdout; a thread here turns each line back into the tuple loadgen.py would have sent (bytes
from base64, the "groups" keys back to ints) and passes it on over a multiprocessing pipe,
so `conn` is a real Connection: `multiprocessing.connection.wait`, `poll` and `recv` work on
it as on a `Child`'s.

    binary = build()                    # go build into .cache/bench/lg-go when the sources changed
    w = GoChild(binary, name="loadgen-0")
    w.send(("connect", url, n, sampled, inflight)); w.recv_kind("connected", 120)
"""
from __future__ import annotations

import base64
import json
import multiprocessing
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import psutil

from pipes import PipeReplies

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SOURCE = BENCH / "lg_go"
BINARY = ROOT / ".cache" / "bench" / "lg-go"
BYTES_KEYS = ("admit_ms", "lat", "lat_sent")


class BuildError(RuntimeError):
    pass


def go_tool() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    for candidate in ("/usr/local/go/bin/go", str(Path.home() / "go" / "bin" / "go"),
                      "/usr/lib/go/bin/go"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _sources() -> list[Path]:
    return sorted(p for p in SOURCE.iterdir() if p.suffix == ".go" or p.name in ("go.mod",
                                                                                  "go.sum"))


def build(binary: Path = BINARY, force: bool = False) -> Path:
    """`go build` bench/lg_go into `binary` unless it is newer than every source file;
    returns its path. Raises BuildError when there is no Go toolchain or the build fails."""
    binary = Path(binary)
    newest = max(p.stat().st_mtime for p in _sources())
    if not force and binary.exists() and binary.stat().st_mtime >= newest:
        return binary
    go = go_tool()
    if go is None:
        raise BuildError("no Go toolchain (go) found: install Go or use --lg python")
    binary.parent.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_name(f"{binary.name}.{os.getpid()}.tmp")
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false",
           "GOTOOLCHAIN": os.environ.get("GOTOOLCHAIN", "local")}
    result = subprocess.run([go, "build", "-trimpath", "-o", str(tmp), "."], cwd=SOURCE, env=env,
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"go build in {SOURCE} failed:\n{result.stderr[-3000:]}")
    os.replace(tmp, binary)
    return binary


def decode(message: list) -> tuple:
    """A message of the Go process as the tuple loadgen.py sends."""
    kind, *rest = message
    if rest and isinstance(rest[0], dict):
        rest[0] = _decode_body(rest[0])
    return (kind, *rest)


def _decode_body(body: dict) -> dict:
    for key in BYTES_KEYS:
        if isinstance(body.get(key), str):
            body[key] = base64.b64decode(body[key])
    groups = body.get("groups")
    if isinstance(groups, dict):
        body["groups"] = {int(k): _decode_body(v) for k, v in groups.items()}
    return body


class _Proc:
    """What bench.py uses of a multiprocessing.Process: name, pid, join, is_alive, kill."""

    def __init__(self, popen: subprocess.Popen, name: str):
        self.popen, self.name, self.pid = popen, name, popen.pid

    def join(self, timeout: float | None = None) -> None:
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait(5)

    @property
    def exitcode(self):
        return self.popen.poll()


class GoChild(PipeReplies):
    """A Go load-generator process with bench.py's `Child` interface: send(message),
    recv_kind(kind, timeout, on_other), .conn (wait/poll/recv), .ps (psutil), .proc.name."""

    def __init__(self, binary: Path | str | None = None, name: str = "loadgen-go",
                 env: dict | None = None):
        binary = str(binary or BINARY)
        self.popen = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      env={**os.environ, **(env or {})}, close_fds=True)
        self.proc = _Proc(self.popen, name)
        self.ps = psutil.Process(self.popen.pid)
        self.conn, self._feed = multiprocessing.Pipe(duplex=False)
        self._lock = threading.Lock()
        self._relay = threading.Thread(target=self._pump, name=f"{name}-relay", daemon=True)
        self._relay.start()

    def _pump(self) -> None:
        try:
            for line in self.popen.stdout:
                if line.strip():
                    self._feed.send(decode(json.loads(line)))
        except (OSError, ValueError, EOFError):
            pass
        finally:
            self._feed.close()         # the reader's recv() raises EOFError

    def send(self, message) -> None:
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        with self._lock:
            self.popen.stdin.write(data)
            self.popen.stdin.flush()

    def close(self, timeout: float = 5.0) -> None:
        """quit, then kill when it does not end within `timeout`."""
        try:
            self.send(("quit",))
        except OSError:
            pass
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
        try:
            self.popen.stdin.close()
        except OSError:
            pass
