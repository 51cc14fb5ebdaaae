"""Subscriber-auth tools for the end-to-end tests: a JWKS server on loopback, JWT minting
(HS256, RS256, ES256), tickets from POST /tickets, streams opened with them, and a reader that
drains many streams at once.

Every token and ticket made here is remembered in `SECRETS_SEEN`, so a test can look for each
of them in the service's log output afterwards (none may appear).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import re
import selectors
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.sse import SSEClient

SECRETS_SEEN: set[str] = set()        # every token and ticket minted or issued in this process


def remember(secret: str) -> str:
    SECRETS_SEEN.add(secret)
    return secret


def claims(sub: str, event_types: Iterable[str] = ("*",), sources: Iterable[str] = ("*",),
           lifetime: float = 300.0, *, scope_claim: str = "sse", aud: str | None = None,
           iss: str | None = None, nbf: float | None = None, exp: float | None = None,
           **extra) -> dict:
    """A payload: `sub`, the scope claim, `iat`, `exp` (now + lifetime unless given)."""
    now = time.time()
    payload = {"sub": sub, scope_claim: {"event_types": list(event_types),
                                         "sources": list(sources)},
               "iat": int(now), "exp": int(exp if exp is not None else now + lifetime),
               "jti": uuid.uuid4().hex}
    if aud is not None:
        payload["aud"] = aud
    if iss is not None:
        payload["iss"] = iss
    if nbf is not None:
        payload["nbf"] = int(nbf)
    payload.update(extra)
    return payload


def hs256_token(secret: bytes, sub: str, **kw) -> str:
    return remember(jwt.encode(claims(sub, **kw), secret, algorithm="HS256"))


class SigningKey:
    """One private key with its kid and algorithm (RS256 or ES256)."""

    def __init__(self, alg: str = "RS256", kid: str | None = None):
        self.alg = alg
        self.kid = kid or f"k-{uuid.uuid4().hex[:12]}"
        if alg.startswith("RS"):
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.jwk = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        elif alg == "ES256":
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.jwk = json.loads(ECAlgorithm.to_jwk(self.private.public_key()))
        else:
            raise ValueError(f"no key for {alg}: use RS256 or ES256")
        self.jwk.update(kid=self.kid, alg=alg, use="sig")

    def token(self, sub: str, *, kid: str | None = None, headers: dict | None = None,
              **kw) -> str:
        head = {"kid": self.kid if kid is None else kid, **(headers or {})}
        return remember(jwt.encode(claims(sub, **kw), self.private, algorithm=self.alg,
                                   headers=head))


class JwksServer:
    """GET /jwks.json on 127.0.0.1 serves the current public keys; rotate() adds one (new kid)
    and signs new tokens with it. `fetches` counts the requests."""

    def __init__(self, alg: str = "RS256"):
        self.keys: list[SigningKey] = [SigningKey(alg)]
        self.fetches = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.split("?")[0] != "/jwks.json":
                    self.send_error(404)
                    return
                with owner._lock:
                    owner.fetches += 1
                    body = json.dumps({"keys": [k.jwk for k in owner.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name="jwks-server")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    @property
    def current(self) -> SigningKey:
        return self.keys[-1]

    def start(self) -> "JwksServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def rotate(self, alg: str | None = None) -> SigningKey:
        key = SigningKey(alg or self.current.alg)
        with self._lock:
            self.keys.append(key)
        return key

    def token(self, sub: str, **kw) -> str:
        return self.current.token(sub, **kw)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# -- HTTP ----------------------------------------------------------------------------------
def request(url: str, method: str = "GET", headers: dict | None = None,
            timeout: float = 10.0) -> tuple[int, dict, bytes]:
    """status, headers (Title-Case keys), body; HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, method=method, headers=headers or {},
                                 data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, {k.title(): v for k, v in response.headers.items()}, \
                response.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.title(): v for k, v in err.headers.items()}, err.read()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def post_ticket(base_url: str, token: str | None = None,
                headers: dict | None = None) -> tuple[int, dict, dict]:
    """POST /tickets with the token as a bearer: status, JSON body, headers. The ticket, if
    any, is remembered as a secret."""
    status, head, body = request(f"{base_url}/tickets", "POST",
                                 {**(bearer(token) if token else {}), **(headers or {})})
    parsed = json.loads(body or b"null")
    if isinstance(parsed, dict) and isinstance(parsed.get("ticket"), str):
        remember(parsed["ticket"])
    return status, parsed, head


def ticket(base_url: str, token: str) -> str:
    status, body, _ = post_ticket(base_url, token)
    assert status == 201, (status, body)
    return body["ticket"]


def older_ticket(secret: str, subject: str, lifetime: float = 30.0) -> str:
    """A ticket (scope: everything) as releases before 2026-12-06 issued them, version 1:
    HMAC-SHA256 over "sse-ticket." + body; remembered as a secret."""
    now = time.time()
    payload = [1, subject, ["*"], ["*"], now + 300, round(now + lifetime, 3), uuid.uuid4().hex]
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), b"sse-ticket." + body.encode(), hashlib.sha256).digest()
    return remember(f"{body}.{_b64(mac)}")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def events_url(base_url: str, query: str | dict = "", ticket_: str | None = None) -> str:
    if isinstance(query, dict):
        query = urlencode(query)
    parts = [p for p in (query, f"ticket={ticket_}" if ticket_ else "") if p]
    return f"{base_url}/events" + ("?" + "&".join(parts) if parts else "")


def open_stream(base_url: str, token: str, query: str | dict = "", last_id: str | None = None,
                timeout: float = 15.0, wait_open: bool = True) -> SSEClient:
    """POST /tickets with the token, then GET /events?ticket=...&<query> (with Last-Event-ID
    when given). With wait_open, reads until the opening comment arrives (status 200 only)."""
    url = events_url(base_url, query, ticket(base_url, token))
    client = SSEClient(url, headers={"Last-Event-ID": last_id} if last_id else None,
                       timeout=timeout)
    if wait_open and client.status == 200:
        client.read_until(lambda evs: client.parser.comments or evs, timeout=timeout)
    return client


def payloads(events) -> list[dict]:
    """The JSON bodies of the ordinary events (not gap or auth-expired)."""
    return [json.loads(e["data"]) for e in events if e["event"] not in ("gap", "auth-expired")]


def drain(clients: list[SSEClient], done, timeout: float) -> bool:
    """Read every client's socket as data comes (one selector), until done() or the deadline;
    a closed stream stops being read. Returns done()."""
    selector = selectors.DefaultSelector()
    timeouts = {}
    for client in clients:
        if not client.closed:
            timeouts[id(client)] = client.sock.gettimeout()
            client.sock.setblocking(False)
            selector.register(client.sock, selectors.EVENT_READ, client)
    deadline = time.monotonic() + timeout
    try:
        while not done() and selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for key, _ in selector.select(min(remaining, 0.5)):
                client = key.data
                try:
                    chunk = client.sock.recv(262144)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    chunk = b""
                if chunk:
                    client._consume(chunk)
                if not chunk or client.closed:
                    client.closed = True
                    selector.unregister(client.sock)
        return bool(done())
    finally:
        selector.close()
        for client in clients:
            if id(client) in timeouts:
                try:
                    client.sock.settimeout(timeouts[id(client)])
                except OSError:
                    pass


def close_all(clients: Iterable[SSEClient]) -> None:
    for client in clients:
        client.close()


_RUN = re.compile(r"[A-Za-z0-9_\-]{12,}")
_SPLIT = re.compile(r"[^A-Za-z0-9_\-]+")


def log_leaks(text: str, secrets: Iterable[str] | None = None) -> list[str]:
    """The secrets (tokens, tickets, secrets; by default every one made here) of which any
    distinctive part (a run of 12+ base64url characters: a JWT's claims or signature, a
    ticket's body or MAC) appears in text. Reported shortened, so the report leaks nothing.

    Fast on a large log: the text's runs of such characters are collected once."""
    runs = set(_RUN.findall(text))
    longer = [run for run in runs if len(run) > 12]
    found = []
    for secret in secrets if secrets is not None else SECRETS_SEEN:
        parts = secret.split(".")
        if len(parts) == 3:       # a JWT: its header is shared by many tokens, no secret
            parts = parts[1:]
        for part in (p for piece in parts for p in _SPLIT.split(piece)):
            if len(part) < 12:
                continue
            if part in runs or any(part in run for run in longer if len(run) > len(part)):
                found.append(f"{secret[:8]}…({len(secret)} chars; part {part[:6]}…)")
                break
    return found


def wait_for(check, timeout: float = 10.0, interval: float = 0.05, what: str = "a condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached in {timeout}s (last: {last!r})")
