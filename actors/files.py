"""Room for the files the instance's processes share through maps: the limits, the used
ticket nonces, the metrics (pure: the master imports it)."""
from __future__ import annotations

import errno
import os

UNSUPPORTED = (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)   # no fallocate on this filesystem


def allocate(fd: int, size: int) -> None:
    """Real room for the file's first `size` bytes, or OSError (ENOSPC, EDQUOT): a write
    through a map into a page the filesystem has no room for is SIGBUS. Where there is no
    fallocate (macOS; a filesystem musl does not emulate it on) the file is only made that
    long, sparse. Never shortens the file."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        try:
            fallocate(fd, 0, size)
            return
        except OSError as exc:
            if exc.errno not in UNSUPPORTED:
                raise
    if os.fstat(fd).st_size < size:
        os.ftruncate(fd, size)
