"""Protection at the door: who the client is, what browsers may do (CORS), who gets in.

Pure parts: `client_address` (the socket peer, or behind a trusted proxy the right-most
untrusted X-Forwarded-For hop), `limit_key` (the address the limits count by) and
`cors_headers`. `register(app)` answers CORS preflights, adds CORS headers to every answer and
rate-limits /stats; /events calls `admit(system, stream=True)` itself and gets a `Lease`.
"""
from __future__ import annotations

import ipaddress

import pykka
from flask import current_app, g, request

from actors.messages import Admit, Release
from web.errors import Refused, json_error
from web.system import ask, current_system

RATE_LIMITED = frozenset({"status.stats"})     # /events admits itself: it also takes a slot
MAX_FORWARDED_HOPS = 32
PREFLIGHT_MAX_AGE = "600"
CORS_METHODS = "GET, HEAD"


# -- the client's address -------------------------------------------------------------------
def _ip(text: str):
    """An address from a peer or X-Forwarded-For entry ([v6]:port and v4:port too), or None."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _trusted(address, networks) -> bool:
    return any(address in network for network in networks)


def client_address(peer: str, forwarded: str | None, trusted) -> str:
    """The socket peer; when the peer is a trusted proxy, the right-most untrusted hop of
    X-Forwarded-For (hops left of a malformed entry cannot be believed: the last trusted
    hop answers for them)."""
    address = _ip(peer or "")
    if address is None:
        return peer or ""
    if not forwarded or not trusted or not _trusted(address, trusted):
        return str(address)
    for hop in reversed(forwarded.split(",")[-MAX_FORWARDED_HOPS:]):
        candidate = _ip(hop)
        if candidate is None:
            break
        address = candidate
        if not _trusted(candidate, trusted):
            break
    return str(address)


def limit_key(address: str) -> str:
    """What the limits count by: the address, or for IPv6 its /64 (one host's usual share)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return address


# -- admission --------------------------------------------------------------------------------
class Lease:
    """An admitted stream's slot, given back exactly once.

    Used as `with lease:` around the view, it is released on the way out unless the stream
    took it over (`hand_over()`); the stream then releases it when it ends.
    """

    __slots__ = ("limiter", "address", "handed_over")

    def __init__(self, limiter, address: str):
        self.limiter, self.address, self.handed_over = limiter, address, False

    def hand_over(self) -> "Lease":
        self.handed_over = True
        return self

    def release(self) -> None:
        limiter, self.limiter = self.limiter, None
        if limiter is not None:
            try:
                limiter.tell(Release(self.address))
            except pykka.ActorDeadError:
                pass    # shutting down: the counts go with the limiter

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc_info) -> None:
        if not self.handed_over or exc_info[0] is not None:
            self.release()


def admit(system, *, stream: bool) -> Lease:
    """Ask the limiter; raise Refused (429/503 with Retry-After) or return the lease."""
    key = limit_key(g.client_address)
    decision = ask(system.limiter, Admit(key, stream))
    if not decision.allowed:
        raise Refused(decision.reason, decision.retry_after)
    return Lease(system.limiter if stream else None, key)


# -- CORS -----------------------------------------------------------------------------------
def _origin_allowed(origin: str, allowed) -> bool:
    wanted = origin.lower().rstrip("/")
    return any(wanted == entry.lower().rstrip("/") for entry in allowed)


def cors_headers(origin: str | None, allowed) -> dict:
    """Allow headers for a request from `origin`: `*` (never with credentials), the origin
    echoed (with credentials) when listed, nothing otherwise."""
    if "*" in allowed:
        headers = {"Access-Control-Allow-Origin": "*"}
    elif origin and _origin_allowed(origin, allowed):
        headers = {"Access-Control-Allow-Origin": origin,
                   "Access-Control-Allow-Credentials": "true"}
    else:
        return {}
    headers["Access-Control-Expose-Headers"] = "Retry-After"
    return headers


def _preflight(settings):
    origin = request.headers.get("Origin")
    allow = cors_headers(origin, settings.cors_allowed_origins)
    if not allow:
        return json_error(403, "origin_not_allowed",
                          "this origin may not call the gateway (see CORS_ALLOWED_ORIGINS)")
    response = current_app.response_class(status=204)
    response.headers.update(allow)
    response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
    response.headers["Access-Control-Allow-Headers"] = ", ".join(settings.cors_allowed_headers)
    response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    return response


def register(app) -> None:
    settings = app.config["SETTINGS"]

    @app.before_request
    def guard():
        g.client_address = client_address(
            request.remote_addr or "", ",".join(request.headers.getlist("X-Forwarded-For")),
            settings.trusted_proxies)
        if (request.method == "OPTIONS" and request.url_rule is not None
                and "Access-Control-Request-Method" in request.headers):
            return _preflight(settings)
        if request.endpoint in RATE_LIMITED and settings.rate_limit_enabled:
            admit(current_system(), stream=False)
        return None

    @app.after_request
    def cors(response):
        response.headers.update(cors_headers(request.headers.get("Origin"),
                                             settings.cors_allowed_origins))
        if "*" not in settings.cors_allowed_origins:
            response.vary.add("Origin")
        return response
