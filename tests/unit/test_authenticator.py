"""actors/auth/authenticator.py: credentials in their order, the modes, tickets, the scope and
the JWKS fetched over a real loopback HTTP server."""
import json
import logging
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from actors.auth.authenticator import (
    CREDENTIAL_REQUIRED, Authenticator, MissingCredential, jwks_fetcher,
)
from actors.auth.identity import Identity, InvalidToken
from actors.auth.scope import Scope
from actors.auth.tickets import InvalidTicket
from actors.settings import Settings, SettingsError
from actors.settings.warnings import auth_warnings

SECRET = b"j" * 32
TICKET_SECRET = b"t" * 32
SCOPE = {"event_types": ["order.*"], "sources": ["*"]}


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def settings(**overrides):
    base = dict(auth_mode="required", auth_jwt_algorithms=("HS256",), auth_jwt_secret=SECRET,
                auth_ticket_secret=TICKET_SECRET)
    return Settings.defaults(**(base | overrides))


def token(sub="alice", exp_in=300, secret=SECRET, **extra):
    now = int(time.time())
    return jwt.encode({"sub": sub, "sse": SCOPE, "exp": now + exp_in} | extra, secret,
                      algorithm="HS256")


def refused(call) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        call()
    return caught.value


def test_credentials_are_taken_in_order_bearer_cookie_ticket():
    auth = Authenticator.from_settings(settings())
    ticket, _ = auth.issue_ticket(auth.identify(bearer=token("carol")))
    assert auth.identify(bearer=token("alice"), cookie=token("bob"), ticket=ticket).subject \
        == "alice"
    assert auth.identify(cookie=token("bob"), ticket=ticket).subject == "bob"
    # a bad bearer is not rescued by a good cookie: the first credential given decides
    assert refused(lambda: auth.identify(bearer="garbage", cookie=token("bob"))).reason \
        == "malformed token"
    assert auth.identify(ticket=ticket).subject == "carol"     # not used up by the calls above


def test_required_mode_without_a_credential_raises_missing_credential():
    auth = Authenticator.from_settings(settings())
    error = refused(lambda: auth.identify())
    assert isinstance(error, MissingCredential) and error.reason == CREDENTIAL_REQUIRED
    assert isinstance(refused(lambda: auth.identify(bearer="", cookie="")), MissingCredential)


def test_optional_mode_without_a_credential_is_anonymous_with_the_anonymous_scope():
    anonymous = Scope.parse("blog.*", "*")
    auth = Authenticator.from_settings(settings(auth_mode="optional",
                                                auth_anonymous_scope=anonymous))
    assert auth.identify() is None
    assert auth.scope_of(None) == anonymous
    assert refused(lambda: auth.identify(bearer=token(secret=b"x" * 32))).reason == "bad signature"


def test_optional_mode_with_an_empty_anonymous_scope_asks_for_a_credential():
    auth = Authenticator.from_settings(settings(auth_mode="optional"))   # default: nothing
    assert isinstance(refused(lambda: auth.identify()), MissingCredential)


def test_the_scope_of_a_token_is_its_claim():
    auth = Authenticator.from_settings(settings())
    identity = auth.identify(bearer=token())
    assert auth.scope_of(identity) == Scope.parse(["order.*"], ["*"])


def test_the_subject_and_scope_claims_named_in_the_settings_are_the_ones_read():
    """AUTH_SUBJECT_CLAIM=uid and AUTH_SCOPE_CLAIM=perm, for an issuer whose tokens name the
    user and the scope so: its tokens must pass with that subject and scope, and a token of
    the default claims (sub, sse) is not taken instead."""
    auth = Authenticator.from_settings(settings(auth_subject_claim="uid",
                                                auth_scope_claim="perm"))
    scope = {"event_types": ["billing.*"], "sources": ["shop"]}
    signed = jwt.encode({"uid": "alice", "perm": scope, "exp": int(time.time()) + 300},
                        SECRET, algorithm="HS256")
    identity = auth.identify(bearer=signed)
    assert identity.subject == "alice"
    assert auth.scope_of(identity) == Scope.parse(["billing.*"], ["shop"])
    assert refused(lambda: auth.identify(bearer=token("bob"))).reason == (
        "claim 'uid' must name the subject")
    with_sub = jwt.encode({"uid": "alice", "sse": SCOPE, "exp": int(time.time()) + 300},
                          SECRET, algorithm="HS256")
    assert refused(lambda: auth.identify(bearer=with_sub)).reason.startswith("claim 'perm'")


def test_a_ticket_lasts_its_ttl_or_until_the_token_expires_and_is_used_once():
    clock = Clock()
    auth = Authenticator.from_settings(settings(auth_ticket_ttl_seconds=30,
                                                auth_jwt_leeway_seconds=0), clock=clock)
    long_lived = Identity("alice", ("*",), ("*",), clock.now + 3600)
    short_lived = Identity("bob", ("*",), ("*",), clock.now + 10)
    ticket, expires_at = auth.issue_ticket(long_lived)
    assert expires_at == clock.now + 30
    assert auth.issue_ticket(short_lived)[1] == clock.now + 10
    assert auth.identify(ticket=ticket) == long_lived
    assert refused(lambda: auth.identify(ticket=ticket)).reason == "ticket already used"
    late, _ = auth.issue_ticket(long_lived)
    clock.now += 31
    assert refused(lambda: auth.identify(ticket=late)).reason == "ticket expired"


def test_a_token_accepted_within_its_leeway_gives_streams_and_tickets_that_last_it():
    """A token is accepted until exp + AUTH_JWT_LEEWAY_SECONDS; what it opens lasts as long:
    a stream used to end within a second (auth-expired, a reconnect loop for the rest of the
    leeway) and a ticket came already expired."""
    clock = Clock()
    auth = Authenticator.from_settings(settings(auth_ticket_ttl_seconds=30,
                                                auth_jwt_leeway_seconds=20), clock=clock)
    lapsed = Identity("bob", ("*",), ("*",), clock.now - 5)
    assert auth.ends_at(lapsed) == clock.now + 15
    ticket, expires_at = auth.issue_ticket(lapsed)
    assert expires_at == clock.now + 15
    assert auth.ends_at(auth.identify(ticket=ticket)) == clock.now + 15
    assert auth.ends_at(Identity("eve", ("*",), ("*",), math.inf)) == math.inf
    accepted = auth.identify(bearer=token(sub="carol", exp_in=-10))
    assert accepted.subject == "carol" and auth.ends_at(accepted) > time.time()


def test_a_shared_ticket_secret_lets_another_instance_redeem_a_random_one_does_not():
    issuer = Authenticator.from_settings(settings())
    other = Authenticator.from_settings(settings())
    ticket, _ = issuer.issue_ticket(issuer.identify(bearer=token()))
    assert other.identify(ticket=ticket).subject == "alice"
    assert auth_warnings(settings()) == []
    lonely = Authenticator.from_settings(settings(auth_ticket_secret=None))
    stranger = Authenticator.from_settings(settings(auth_ticket_secret=None))
    ticket, _ = lonely.issue_ticket(lonely.identify(bearer=token()))
    error = refused(lambda: stranger.identify(ticket=ticket))
    assert isinstance(error, InvalidTicket) and error.reason == "bad ticket signature"
    [warning] = auth_warnings(settings(auth_ticket_secret=None))
    assert "AUTH_TICKET_SECRET is not set" in warning and "every instance" in warning


def test_the_description_says_how_tokens_are_checked_and_never_a_secret():
    from actors.auth.subjects import parse_subject_field
    text = Authenticator.from_settings(settings(
        auth_cookie_name="sse_token", auth_jwt_audience="sse",
        auth_subject_field=parse_subject_field("header:user-id"))).describe()
    for words in ("subscriber auth required", "algorithms HS256", "keys from AUTH_JWT_SECRET",
                  "private events by header:user-id",
                  "subject claim 'sub'", "cookie sse_token", "audience sse", "tickets 30 s"):
        assert words in text
    assert SECRET.decode() not in text and TICKET_SECRET.decode() not in text
    jwks = settings(auth_jwt_algorithms=("ES256",), auth_jwt_secret=None,
                    auth_jwks_url="https://user:pw@id.example:8443/jwks?key=k")
    text = Authenticator.from_settings(jwks, fetch=lambda: {"keys": []}).describe()
    assert "keys from JWKS https://id.example:8443/jwks" in text
    assert "pw" not in text and "key=k" not in text


def test_off_mode_has_no_authenticator():
    with pytest.raises(ValueError, match="required or optional"):
        Authenticator.from_settings(settings(auth_mode="off"))


# -- the JWKS, over HTTP ------------------------------------------------------------------------

class JwksServer:
    def __init__(self, document, delay=0.0):
        self.document, self.delay, self.requests = document, delay, 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests += 1
                time.sleep(owner.delay)
                body = json.dumps(owner.document).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass                # the client gave up (the time-out test)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/jwks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def es_key():
    return ec.generate_private_key(ec.SECP256R1())


def es_settings(url):
    return settings(auth_jwt_algorithms=("ES256",), auth_jwt_secret=None, auth_jwks_url=url)


def test_the_jwks_is_prefetched_in_the_background_and_then_used(es_key):
    server = JwksServer({"keys": [ECAlgorithm.to_jwk(es_key.public_key(), as_dict=True)
                                  | {"kid": "k1"}]})
    try:
        auth = Authenticator.from_settings(es_settings(server.url))
        auth.prefetch().join(10)
        assert server.requests == 1
        signed = jwt.encode({"sub": "alice", "sse": SCOPE, "exp": int(time.time()) + 60},
                            es_key, algorithm="ES256", headers={"kid": "k1"})
        assert auth.identify(bearer=signed).subject == "alice"
        assert server.requests == 1                        # no fetch on the request path
    finally:
        server.close()


def test_a_jwks_fetch_gives_up_after_its_timeout_and_keeps_no_keys(es_key, caplog):
    server = JwksServer({"keys": []}, delay=2.0)
    try:
        fetch = jwks_fetcher(server.url, timeout_s=0.3)
        started = time.monotonic()
        with pytest.raises(OSError):
            fetch()
        assert time.monotonic() - started < 1.8
        assert "JWKS fetch from http://127.0.0.1" in caplog.text and "failed" in caplog.text
    finally:
        server.close()


class TricklingServer:
    """Answers with a JWKS one byte every `pause` seconds: in its head or in its body."""

    def __init__(self, where, pause=0.2):
        body = json.dumps({"keys": []}).encode()
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"p" * 40
        head += b"\r\nContent-Length: %d\r\n\r\n" % len(body)
        self.fast, self.slow = (b"", head + body) if where == "head" else (head, body)
        self.pause = pause
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/jwks"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        connection, _ = self.listener.accept()
        with connection:
            try:
                connection.recv(65536)
                connection.sendall(self.fast)
                for byte in self.slow:
                    time.sleep(self.pause)
                    connection.sendall(bytes([byte]))
            except OSError:
                pass                    # the client gave up

    def close(self):
        self.listener.close()


@pytest.mark.parametrize("where", ["head", "body"])
def test_a_jwks_server_answering_a_byte_at_a_time_gets_no_more_than_the_timeout(where):
    # each byte comes within the socket's time-out, so only a limit on the whole fetch holds
    server = TricklingServer(where)
    try:
        fetch = jwks_fetcher(server.url, timeout_s=1.0)
        started = time.monotonic()
        with pytest.raises(OSError):
            fetch()
        assert time.monotonic() - started < 2.0
    finally:
        server.close()


def test_a_jwks_that_is_not_json_is_refused():
    server = JwksServer(["not", "an", "object"])
    try:
        with pytest.raises(ValueError, match="not a JSON object"):
            jwks_fetcher(server.url)()
    finally:
        server.close()


class Redirector:
    """Answers every GET with 302 to `target`; over TLS when given a certificate."""

    def __init__(self, target, cert=None):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if cert is not None:
            import ssl
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*cert)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_port}/jwks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_jwks_redirect_from_https_to_plain_http_is_refused(tmp_path, monkeypatch, es_key):
    """Keys fetched over https must not arrive over http: a redirect there is refused (urllib
    follows it by default), while plain redirects of an http URL still work."""
    import shutil
    import subprocess
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command")
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=jwks",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    document = {"keys": [{**json.loads(ECAlgorithm.to_jwk(es_key.public_key())), "kid": "k1"}]}
    plain = JwksServer(document)
    secure, insecure = Redirector(plain.url, cert=(cert, key)), Redirector(plain.url)
    try:
        assert jwks_fetcher(insecure.url)()["keys"][0]["kid"] == "k1"
        assert plain.requests == 1
        with pytest.raises(OSError, match="https"):
            jwks_fetcher(secure.url)()
        assert plain.requests == 1
    finally:
        for server in (plain, secure, insecure):
            server.close()


@pytest.mark.parametrize("answer", [{}, {"error": "maintenance"}, {"keys": "none"}])
def test_an_answer_that_is_not_a_key_set_keeps_the_keys_already_known(es_key, answer, caplog):
    """A JSON object without a "keys" list (an error page as JSON, a wrong URL) counted as a
    key set with no keys: every key known so far was dropped and every token refused."""
    server = JwksServer({"keys": [ECAlgorithm.to_jwk(es_key.public_key(), as_dict=True)
                                  | {"kid": "k1"}]})
    try:
        auth = Authenticator.from_settings(es_settings(server.url))
        auth.prefetch().join(10)
        server.document = answer
        stranger = jwt.encode({"sub": "eve", "sse": SCOPE, "exp": int(time.time()) + 60},
                              es_key, algorithm="ES256", headers={"kid": "k9"})
        with pytest.raises(InvalidToken, match="unknown key id"):
            auth.identify(bearer=stranger)
        assert server.requests == 2
        signed = jwt.encode({"sub": "alice", "sse": SCOPE, "exp": int(time.time()) + 60},
                            es_key, algorithm="ES256", headers={"kid": "k1"})
        assert auth.identify(bearer=signed).subject == "alice"
        assert 'not a JWKS (no "keys" list)' in caplog.text
    finally:
        server.close()


def test_a_ticket_of_the_other_secret_opens_a_stream_on_an_instance_that_takes_it():
    """AUTH_TICKET_OTHER_SECRET, from the environment to the redeemer; without it, such a
    ticket is a bad signature (a rotation's instances would refuse each other's tickets)."""
    new = b"n" * 32
    env = {"AUTH_MODE": "required", "AUTH_JWT_ALGORITHMS": "HS256",
           "AUTH_JWT_SECRET": SECRET.decode(), "AUTH_TICKET_SECRET": TICKET_SECRET.decode()}
    rotated = Authenticator.from_settings(settings(auth_ticket_secret=new))
    ticket, _ = rotated.issue_ticket(rotated.identify(bearer=token("alice")))
    plain = Authenticator.from_settings(Settings.from_env(env, env_file=None))
    assert refused(lambda: plain.identify(ticket=ticket)).reason == "bad ticket signature"
    taking = Authenticator.from_settings(Settings.from_env(
        {**env, "AUTH_TICKET_OTHER_SECRET": new.decode()}, env_file=None))
    assert taking.identify(ticket=ticket).subject == "alice"
    with pytest.raises(SettingsError, match="AUTH_TICKET_OTHER_SECRET needs AUTH_TICKET_SECRET"):
        Settings.from_env({**env, "AUTH_TICKET_SECRET": "",
                           "AUTH_TICKET_OTHER_SECRET": new.decode()}, env_file=None)


def test_a_failed_jwks_fetch_says_what_clients_get_and_a_good_one_after_it_says_so(
        es_key, caplog):
    """With no key fetched yet, every failed fetch said 'the keys known so far stay in use'
    (there were none: every token got 503), and nothing was logged when the issuer answered
    again."""
    caplog.set_level(logging.INFO, logger="actors.auth.authenticator")
    server = JwksServer({"not": "a key set"})
    try:
        auth = Authenticator.from_settings(es_settings(server.url))
        auth.prefetch().join(10)
        [first] = [r.getMessage() for r in caplog.records]
        assert "no keys yet" in first and "503" in first and "known so far" not in first, first
        caplog.clear()
        known = [True]
        fetch = jwks_fetcher(server.url, keys_known=lambda: known[0])
        with pytest.raises(ValueError):
            fetch()
        server.document = {"keys": [ECAlgorithm.to_jwk(es_key.public_key(), as_dict=True)
                                    | {"kid": "k1"}]}
        fetch()
        fetch()
    finally:
        server.close()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "WARNING"], lines
    assert "the keys known so far stay in use" in lines[0][1]
    assert f"JWKS fetch from {server.url} succeeded after 1 failed: 1 key" in lines[1][1]


def test_a_failed_jwks_fetch_never_logs_the_urls_user_or_password(caplog):
    """Such a URL is refused by the settings; a caller of the fetcher itself gets the same
    care: urllib's error quotes the password it took for a port."""
    from actors.auth.authenticator import jwks_fetcher
    with caplog.at_level(logging.INFO), pytest.raises(Exception):
        jwks_fetcher("https://svc:hunter2pass@issuer.example/jwks", timeout_s=2)()
    assert "JWKS fetch from https://issuer.example/jwks failed" in caplog.text
    assert "hunter2pass" not in caplog.text and "svc" not in caplog.text


def test_keys_never_fetched_make_the_instance_not_ready_until_a_fetch_brings_them():
    """With the JWKS server down every stream was answered 503 while /health and /readyz were
    200 and nothing in them named the JWKS (an operations audit)."""
    from dataclasses import replace

    from tests.fakes import make_health
    document: dict = {}

    def fetch():
        if not document:
            raise OSError("connection refused")
        return document
    jwks = settings(auth_jwt_algorithms=("ES256",), auth_jwt_secret=None,
                    auth_jwks_url="https://id.example/jwks")
    auth = Authenticator.from_settings(jwks, fetch=fetch)
    assert "AUTH_JWKS_URL" in auth.keys_pending()
    from actors.auth.jwks import KeysUnavailable
    with pytest.raises(KeysUnavailable):
        auth.rules.jwks.keys("k1")      # a token's look-up: the fetch fails, nothing known
    said = replace(make_health(), keys_pending=auth.keys_pending()).not_ready()
    assert said.startswith("subscriber auth: the issuer's signing keys (AUTH_JWKS_URL)")
    document.update(keys=[])
    auth.rules.jwks.refresh()
    assert auth.keys_pending() == ""
    optional = Authenticator.from_settings(replace(jwks, auth_mode="optional"), fetch=fetch)
    assert optional.keys_pending() == ""        # anonymous streams are served meanwhile


def test_hs_tokens_keep_the_instance_ready_while_the_jwks_cannot_be_fetched():
    """AUTH_JWT_ALGORITHMS=HS256,RS256 with AUTH_JWT_SECRET and AUTH_JWKS_URL: with the key
    server down the HS256 tokens are still verified, so the instance is ready (/readyz); it
    must not be taken out of its load balancer for the RS256 keys alone."""
    def down():
        raise OSError("connection refused")
    both = settings(auth_jwt_algorithms=("HS256", "RS256"),
                    auth_jwks_url="https://id.example/jwks")
    auth = Authenticator.from_settings(both, fetch=down)
    auth.rules.jwks.refresh()               # the start-up fetch fails
    assert auth.jwks.generation == 0 and auth.jwks.fetches == 1
    assert auth.keys_pending() == ""
    assert auth.identify(bearer=token("alice")).subject == "alice"
