"""Is a process still the one that was recorded? Its start time, read from /proc."""
from __future__ import annotations

import os


def process_start(pid: int) -> int | None:
    """The start time of process `pid` (clock ticks after boot; 0 where /proc does not say),
    or None when none runs or it is a zombie (another user's too where /proc hides it; else its
    start time, which differs from the one recorded for a worker)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except FileNotFoundError:
        if os.path.exists("/proc/self/stat"):
            return None
        return _signalled(pid)                  # no /proc (macOS, some containers)
    except OSError:
        return _signalled(pid)                  # hidden (hidepid) or refused
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def _signalled(pid: int) -> int | None:
    """0 (running, start unknown) when signal 0 reaches `pid`; None when it finds no process
    or one of another user."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    return 0
