"""Keep credentials out of log lines (pure)."""
from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from urllib.parse import unquote_plus

MASK = "***"
SECRET_PARAMETERS = frozenset({"ticket", "token", "access_token", "jwt"})
# A JWT (its header is base64url JSON: `{"` is `eyJ`) or a stream ticket (`[1,"`: `WzEsI`;
# deflated, `z` + zlib's header at level 9: `zeN`), wherever it stands: a client may put one
# under any parameter name. Each starts a word: tried at every `eyJ` of a long run (a hostile
# Last-Event-ID of "eyJ" * 2,700), the search took time quadratic in its length (25 ms).
_STARTS = ("eyJ", "WzEsI", "zeN")
_CREDENTIAL = re.compile(r"(?<![A-Za-z0-9_-])(?:eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{2,}\."
                         r"[A-Za-z0-9_-]*|(?:WzEsI|zeN)[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{40,})")


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
    if _CREDENTIAL.search(unquote_plus(name)):
        return mask
    if _CREDENTIAL.search(unquote_plus(value)):
        return f"{name}={mask}"
    return pair


def mask_credentials(text: str) -> str:
    """Every token or ticket in `text` becomes `***`."""
    if not any(start in text for start in _STARTS):     # how each begins: sooner
        return text
    return _CREDENTIAL.sub(MASK, text)


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """Every occurrence of each non-empty secret, the longest first, becomes `***`."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


_URL_CREDENTIALS = re.compile(r"(://)[^/?#@\s]*@")


def mask_url_credentials(text: str) -> str:
    """`https://user:password@host/...` -> `https://***@host/...`, wherever a URL stands."""
    return _URL_CREDENTIALS.sub(r"\1" + MASK + "@", text)
