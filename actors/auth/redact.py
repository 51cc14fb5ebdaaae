"""Keep credentials out of log lines (pure)."""
from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Collection, Iterable
from urllib.parse import unquote_plus

MASK = "***"
SECRET_PARAMETERS = frozenset({"ticket", "token", "access_token", "jwt"})
_B64 = "[A-Za-z0-9_-]"
_WORD_START = rf"(?<!{_B64})"
# A stream ticket (`[2,"`: `WzIsI`, version 1's `[1,"`: `WzEsI`; deflated, `z` + zlib's header
# at level 9: `zeN`), wherever it stands: a client may put one under any parameter name.
_TICKET = re.compile(rf"{_WORD_START}(?:WzIsI|WzEsI|zeN){_B64}{{10,}}\.{_B64}{{32,}}")
# A JWT: three dot-separated base64url segments (padded or not), the first (its header) or the
# second (its claims) a JSON object, as PyJWT decodes them: `{"` is `eyJ`, but PyJWT takes
# whitespace or a BOM first, or UTF-16, too. The claims are checked for a token glued to the
# end of another word (`orders_eyJ...`). Only the first segment is taken, so that a dotted word
# which is no token cannot swallow the start of one after it; each is tried only where a word
# starts: tried at every `eyJ` of a long run (a hostile Last-Event-ID of "eyJ" * 2,700), the
# search took time quadratic in its length (25 ms).
_JWT_START = re.compile(
    rf"{_WORD_START}({_B64}{{10,}}=*)(?=(\.({_B64}{{2,}}=*)\.{_B64}*=*))")


def redact_query(path_with_query: str, names: Collection[str] = SECRET_PARAMETERS,
                 mask: str = MASK) -> str:
    """`/events?ticket=abc&x=1` -> `/events?ticket=***&x=1`: the value of every credential
    parameter (`names`, lower case; the name in any case, percent-encoded or not) is masked,
    and so is any value (or bare parameter) holding a token or ticket; all else is kept."""
    path, mark, query = path_with_query.partition("?")
    if not mark:
        return path_with_query
    return f"{path}?{'&'.join(_redact_pair(pair, names, mask) for pair in query.split('&'))}"


def _redact_pair(pair: str, names: Collection[str], mask: str) -> str:
    name, equals, value = pair.partition("=")
    if equals and unquote_plus(name).strip().lower() in names:
        return f"{name}={mask}"
    if _holds_credential(unquote_plus(name)):
        return mask
    if _holds_credential(unquote_plus(value)):
        return f"{name}={mask}"
    return pair


def mask_credentials(text: str) -> str:
    """Every token or ticket in `text` becomes `***`."""
    if "." not in text:                 # each has a dot: sooner
        return text
    if "WzIsI" in text or "WzEsI" in text or "zeN" in text:
        text = _TICKET.sub(MASK, text)
    if text.count(".") < 2:
        return text
    pieces: list[str] = []
    end = parsed = 0
    for found in _JWT_START.finditer(text):
        header, claims = found.group(1), found.group(3)
        if found.start() < end or not (_starts_object(header) or _starts_object(claims)):
            continue
        parsed += 1
        if parsed > MAX_PARSED or _json_object(header) or _json_object(claims):
            pieces += (text[end:found.start()], MASK)
            end = found.end(2)
    return "".join(pieces) + text[end:] if pieces else text


def _holds_credential(text: str) -> bool:
    return mask_credentials(text) != text


def _starts_object(segment: str) -> bool:
    """Do the first 6 bytes of the base64url `segment` start a JSON object? Most words that
    are no token stop here."""
    try:
        return _OBJECT_START.match(base64.urlsafe_b64decode(segment[:8])) is not None
    except (binascii.Error, ValueError):
        return False


def _json_object(segment: str) -> bool:
    """Does the base64url `segment` decode to a JSON object?"""
    segment = segment.rstrip("=")
    try:
        return isinstance(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))),
                          dict)
    except (binascii.Error, ValueError, RecursionError):     # UnicodeDecodeError is a ValueError
        return False


# what a JSON object's text may start with, as json.loads reads bytes: a BOM, UTF-16's zero
# bytes, whitespace, then `{` (or the first 6 bytes are all of those)
_OBJECT_START = re.compile(rb"(?:\xef\xbb\xbf|\xff\xfe|\xfe\xff)?[\s\x00]*(?:\{|\Z)")
# Words of a text that start like a token, parsed to tell; past that many the text is hostile
# (or all tokens) and the rest are masked unparsed: a parse that fails costs microseconds, and
# a 4 KB query of such words, each refused request's access-log line, cost milliseconds.
MAX_PARSED = 32


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """Every occurrence of each non-empty secret, the longest first, becomes `***`."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


_URL_CREDENTIALS = re.compile(r"(://)[^/?#@\s]*@")


def mask_url_credentials(text: str) -> str:
    """`https://user:password@host/...` -> `https://***@host/...`, wherever a URL stands."""
    return _URL_CREDENTIALS.sub(r"\1" + MASK + "@", text)
