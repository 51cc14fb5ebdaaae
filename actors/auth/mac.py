"""HMAC with its key prepared once (RFC 2104, as Python's hmac module computes it).

The hashes of the padded key (and of a fixed prefix of every message, if any) are kept; each
MAC copies them. Per HMAC-SHA256 of a ticket-sized message, callgrind counted 17k
instructions this way, 23k copying a prepared hmac.HMAC and 30k with hmac.digest, which has
OpenSSL 3 set its HMAC up again on every call.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable

_INNER = bytes(x ^ 0x36 for x in range(256))
_OUTER = bytes(x ^ 0x5C for x in range(256))


class PreparedMAC:
    def __init__(self, key: bytes, digest: Callable = hashlib.sha256, prefix: bytes = b""):
        """The MAC under `key` of `prefix` + each message given to `digest`."""
        block = digest().block_size
        if len(key) > block:
            key = digest(key).digest()
        key = key.ljust(block, b"\0")
        self._inner = digest(key.translate(_INNER))
        self._inner.update(prefix)
        self._outer = digest(key.translate(_OUTER))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()
