"""Keep credentials out of log lines (pure)."""
from __future__ import annotations

from collections.abc import Collection, Iterable
from urllib.parse import unquote_plus

MASK = "***"
SECRET_PARAMETERS = frozenset({"ticket", "token", "access_token", "jwt"})


def redact_query(path_with_query: str, names: Collection[str] = SECRET_PARAMETERS,
                 mask: str = MASK) -> str:
    """`/events?ticket=abc&x=1` -> `/events?ticket=***&x=1`: the value of every credential
    parameter (`names`, lower case; the name in any case, percent-encoded or not) is masked;
    all else is kept."""
    path, mark, query = path_with_query.partition("?")
    if not mark:
        return path_with_query
    return f"{path}?{'&'.join(_redact_pair(pair, names, mask) for pair in query.split('&'))}"


def _redact_pair(pair: str, names: Collection[str], mask: str) -> str:
    name, equals, _value = pair.partition("=")
    if equals and unquote_plus(name).strip().lower() in names:
        return f"{name}={mask}"
    return pair


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """Every occurrence of each non-empty secret, the longest first, becomes `***`."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
