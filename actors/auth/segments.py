"""PyJWT's check of a token's base64url segments, done at C speed.

PyJWT 2.15 refuses a segment with a character outside the base64url alphabet (GHSA-hxm8-2xgr-
2p9m) by testing every character in a Python generator: about 40 us of the ~75 us a HS256
token took to verify on the bench machine, once per stream open. `decode_segment` makes the
same decisions with `bytes.translate`, and `install(jws)` puts it on one PyJWS of our own (the
Verifier's), never on the library's global one.

It is installed only after it has given PyJWT's own answers to SAMPLES (valid segments and
every kind of refusal): a PyJWT whose rules changed keeps its own check, with a log line.
tests/unit/test_auth_segments.py compares the two on many more segments.
"""
from __future__ import annotations

import binascii
import logging

from jwt.exceptions import DecodeError

logger = logging.getLogger(__name__)

ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

# Valid, padded, over-padded, junk, a lone trailing character, a non-canonical last character.
SAMPLES = (b"eyJhbGciOiJIUzI1NiJ9", b"YQ", b"YQ==", b"YWI=", b"YQ===", b"YQ=", b"!!!!",
           b"YW+i", b"YW/i", b"YWJjZ", b"YR", b"", b"YW Jj", b"YWJj\n")


def decode_segment(segment: bytes, name: str) -> bytes:
    """PyJWS._decode_base64url_segment: the decoded bytes, or DecodeError."""
    stripped = segment.rstrip(b"=")
    padding = len(segment) - len(stripped)
    if padding > 2 or (padding and len(segment) % 4 != 0):
        raise DecodeError(f"Invalid {name} padding")
    if len(stripped) % 4 == 1 or stripped.translate(None, ALPHABET):
        raise DecodeError(f"Invalid {name} padding")
    # canonical (PyJWT encodes the bytes back and compares): the last character's bits past
    # the data are zero
    if stripped and _VALUE[stripped[-1]] & _PAST_THE_DATA[len(stripped) % 4]:
        raise DecodeError(f"Invalid {name} padding")
    try:        # jwt.utils.base64url_decode, without its four Python calls
        return binascii.a2b_base64((stripped + b"=" * (-len(stripped) % 4)).translate(_STD))
    except binascii.Error as err:
        raise DecodeError(f"Invalid {name} padding") from err


_STD = bytes.maketrans(b"-_", b"+/")
_VALUE = bytes(ALPHABET.index(c) if c in ALPHABET else 0 for c in range(256))
_PAST_THE_DATA = (0, 0, 0x0F, 0x03)     # by length mod 4 (1 is refused above)


def install(jws) -> bool:
    """Check `jws`'s segments with decode_segment; False (nothing changed) if this PyJWT has no
    such step or answers any of SAMPLES differently."""
    own = getattr(jws, "_decode_base64url_segment", None)
    if own is None:
        return False
    if any(_outcome(own, s) != _outcome(decode_segment, s) for s in SAMPLES):
        logger.info("PyJWT checks token segments in its own way here: its check stays")
        return False
    jws._decode_base64url_segment = decode_segment
    return True


def _outcome(decode, segment: bytes) -> tuple[str, object]:
    try:
        return "ok", decode(segment, "header")
    except DecodeError as exc:
        return "refused", str(exc)
