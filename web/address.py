"""Who the client is: the socket peer, or behind a trusted proxy the right-most untrusted
X-Forwarded-For hop (`client_address`), and the key the limits count by (`limit_key`).
`register(app)` puts the address in `g.client_address` before every request."""
from __future__ import annotations

import ipaddress
import logging
from functools import lru_cache

from flask import g, request

logger = logging.getLogger(__name__)

MAX_FORWARDED_HOPS = 32
MAX_WARNED_PEERS = 16       # peers whose X-Forwarded-For a worker says it does not believe
_warned: set[str] = set()


def _ip(text: str):
    """An address from a peer or X-Forwarded-For entry ([v6]:port and v4:port too), or None.
    An IPv6 zone id (`%eth0`, any text to Python) is dropped: it means nothing off the link."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    text = text.partition("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


@lru_cache(maxsize=4096)        # a worker sees the same peers again and again (reconnects)
def _canonical(peer: str) -> str:
    """The peer's address as text (v4-mapped v6 as v4), or the peer as given when it is none."""
    address = _ip(peer)
    return peer if address is None else str(address)


def _trusted(address, networks) -> bool:
    return any(address in network for network in networks)


def client_address(peer: str, forwarded: str | None, trusted) -> str:
    """The socket peer; when the peer is a trusted proxy, the right-most untrusted hop of
    X-Forwarded-For (hops left of a malformed entry cannot be believed: the last trusted
    hop answers for them)."""
    if not forwarded:
        return _canonical(peer or "")
    if not trusted:
        return _not_believed(_canonical(peer or ""), trusted)
    address = _ip(peer or "")
    if address is None:
        return peer or ""
    if not _trusted(address, trusted):
        return _not_believed(str(address), trusted)
    for hop in reversed(forwarded.split(",")[-MAX_FORWARDED_HOPS:]):
        candidate = _ip(hop)
        if candidate is None:
            break
        address = candidate
        if not _trusted(candidate, trusted):
            break
    return str(address)


def _not_believed(peer: str, trusted) -> str:
    """The peer, whose X-Forwarded-For is ignored: behind a proxy TRUSTED_PROXIES does not
    list, every client counts as the proxy. Said once per worker while TRUSTED_PROXIES is
    unset (behind a proxy the first such peer is the proxy; reached directly, anyone may send
    the header), else once for each of its first peers, counted as the limits count them."""
    seen = limit_key(peer) if trusted else ""
    if peer and seen not in _warned and len(_warned) < MAX_WARNED_PEERS:
        _warned.add(seen)
        logger.warning(
            "X-Forwarded-For from %s is not believed: TRUSTED_PROXIES does not list it; if %s "
            "is your proxy, add it there, or every client behind it counts as %s for the rate "
            "limit and SSE_MAX_CLIENTS_PER_IP", peer, peer, peer,
            extra={"client_address": peer})
    return peer


@lru_cache(maxsize=4096)
def limit_key(address: str) -> str:
    """What the limits count by: the address, or for IPv6 its /64 (one host's usual share)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return address


def register(app) -> None:
    trusted = app.config["SETTINGS"].trusted_proxies

    @app.before_request
    def remember_client_address():
        g.client_address = request_address(trusted)


def request_address(trusted) -> str:
    """The Flask request's client address (what g.client_address holds once the hooks ran)."""
    return environ_address(request.environ, trusted)


def environ_address(environ, trusted) -> str:
    """The client address of a WSGI request (GET /events is served ahead of Flask)."""
    peer = environ.get("REMOTE_ADDR") or ""
    forwarded = environ.get("HTTP_X_FORWARDED_FOR")
    if not forwarded and trusted and ("HTTP_FORWARDED" in environ
                                      or "HTTP_X_REAL_IP" in environ):
        _unread_header(peer, trusted)
    return client_address(peer, forwarded, trusted)


def _unread_header(peer: str, trusted) -> None:
    """A trusted proxy that says who the client is in `Forwarded` or `X-Real-IP` alone (HAProxy's
    option forwarded, nginx's X-Real-IP habit): every client behind it counts as the proxy.
    Said once for each such proxy (of a worker's first MAX_WARNED_PEERS)."""
    address = _ip(peer)
    if address is None or not _trusted(address, trusted):
        return
    key = f"unread {address}"
    if key not in _warned and len(_warned) < MAX_WARNED_PEERS:
        _warned.add(key)
        logger.warning(
            "%s, a proxy TRUSTED_PROXIES lists, says who the client is in Forwarded or X-Real-IP, "
            "which the gateway does not read: every client behind it counts as %s for the rate "
            "limit and SSE_MAX_CLIENTS_PER_IP; have it set X-Forwarded-For (nginx: "
            "proxy_set_header X-Forwarded-For; HAProxy: option forwardfor)", address, address,
            extra={"client_address": str(address)})
