"""Subscriber auth at the HTTP edge (web/auth.py, web/tickets.py, web/stream.py, web/errors.py,
web/cors.py): every 400/401/403/429 answer, tickets, the order of credentials, CORS with
credentials, and no credential in any log line.

Flask's test client and the core's real gateway with a real Authenticator; the limiter is a
real RateLimiterActor driven directly, the broker and history are fake refs.
"""
import logging
import threading
import time
from datetime import datetime
from types import SimpleNamespace

import jwt
import pykka
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from actors.auth.authenticator import Authenticator
from actors.auth.identity import InvalidToken
from actors.auth.scope import Scope, ScopedFilter
from actors.client import every_actor
from actors.filters import Filter
from actors.gateway import Gateway
from actors.limiter import RateLimiterActor
from actors.messages import GetHistorySize, GetLimiterStats, GetStats, Subscribe
from actors.replies import Stats
from actors.settings import Settings
from tests.fakes import DirectRef, FakeRef, stop_all
from web import create_app
from web.auth import cookie_allowed, origin_listed

SECRET = b"j" * 32
TICKET_SECRET = b"t" * 32
SCOPE = {"event_types": ["order.*"], "sources": ["*"]}
ORIGIN = "https://app.example"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def token(sub="alice", exp_in=300, secret=SECRET, scope=None):
    return jwt.encode({"sub": sub, "sse": scope or SCOPE, "exp": int(time.time()) + exp_in},
                      secret, algorithm="HS256")


def bearer(value):
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def gateway():
    def build(jwks_fetch=None, **overrides):
        auth_on = dict(auth_mode="required", auth_jwt_algorithms=("HS256",),
                       auth_jwt_secret=SECRET, auth_ticket_secret=TICKET_SECRET)
        settings = Settings.defaults(**(auth_on | overrides))
        limiter = RateLimiterActor(settings=settings, clock=time.monotonic)
        broker = FakeRef({GetStats: Stats()})
        auth = (Authenticator.from_settings(settings, fetch=jwks_fetch)
                if settings.auth_mode != "off" else None)
        door = Gateway(settings, broker=broker, history=FakeRef({GetHistorySize: 0}),
                       limiter=DirectRef(limiter), stopping=threading.Event(), auth=auth)
        app = create_app(settings, gateway=door)
        return SimpleNamespace(client=app.test_client(), limiter=limiter, broker=broker,
                               auth=auth, app=app, door=door)
    yield build
    stop_all()


def streams(gw):
    return gw.limiter.on_receive(GetLimiterStats()).streams


def subscribed(gw):
    [subscribe] = gw.broker.of(Subscribe)
    return subscribe.info


def nothing_started(gw):
    return streams(gw) == 0 and every_actor() == [] and not gw.broker.of(Subscribe)


# -- 401 ----------------------------------------------------------------------------------------

def test_required_mode_without_a_credential_is_401_with_www_authenticate_bearer(gateway):
    gw = gateway()
    response = gw.client.get("/events")
    assert response.status_code == 401
    assert response.json["error"] == "unauthorized"
    assert response.json["message"].startswith("credential required: send Authorization: Bearer")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert nothing_started(gw)


@pytest.mark.parametrize("credential, reason", [
    (token(secret=b"x" * 32), "bad signature"),
    (token(exp_in=-3600), "token expired"),
    ("not-a-jwt", "malformed token"),
])
def test_a_bad_bearer_token_is_401_naming_the_reason_never_the_token(gateway, credential,
                                                                     reason):
    gw = gateway()
    response = gw.client.get("/events", headers=bearer(credential))
    assert response.status_code == 401 and response.json["error"] == "unauthorized"
    assert response.json["message"].startswith(reason)
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer error="invalid_token", error_description="{reason}"')
    assert credential not in response.get_data(as_text=True)
    assert credential not in str(response.headers)
    assert nothing_started(gw)


def test_the_reason_a_credential_was_refused_is_logged_never_the_credential(gateway, caplog):
    """At 3 a.m. a deployment answering every token 401 must say why in its log."""
    gw = gateway()
    bad = token(secret=b"x" * 32)
    ticket = gw.client.post("/tickets", headers=bearer(token("carol"))).json["ticket"]
    gw.client.get(f"/events?ticket={ticket}").close()
    with caplog.at_level(logging.INFO, logger="web.errors"):
        assert gw.client.get("/events", headers=bearer(bad)).status_code == 401
        assert gw.client.get(f"/events?ticket={ticket}").status_code == 401
        assert gw.client.get("/events").status_code == 401          # no credential: not logged
    lines = [r.getMessage() for r in caplog.records if r.name == "web.errors"]
    assert lines == ["credential refused for 127.0.0.1 on GET /events: bad signature",
                     "credential refused for 127.0.0.1 on GET /events: ticket already used"]
    assert bad not in caplog.text and ticket not in caplog.text
    refused = [r for r in caplog.records if r.name == "web.errors"]     # JSON keys of their own
    assert [(r.client_address, r.reason) for r in refused] == [
        ("127.0.0.1", "bad signature"), ("127.0.0.1", "ticket already used")]


def test_refused_credentials_are_logged_at_most_so_often(gateway, caplog):
    gw = gateway()
    with caplog.at_level(logging.INFO, logger="web.errors"):
        for _ in range(50):
            gw.client.get("/events", headers=bearer("not-a-jwt"))
    lines = [r.getMessage() for r in caplog.records if r.name == "web.errors"]
    assert 1 <= len(lines) <= 20


def test_a_reason_quoting_the_token_s_text_keeps_www_authenticate_to_rfc_6750(gateway):
    # error_description allows printable ASCII but " and \ (RFC 6750 3); gunicorn answers a
    # header value with a character past U+00FF with a bare 500 instead of this 401
    gw = gateway()
    scope = {"event_types": ["блог\"ü!"], "sources": ["*"]}
    response = gw.client.get("/events", headers=bearer(token(scope=scope)))
    assert response.status_code == 401
    assert "блог" in response.json["message"]
    header = response.headers["WWW-Authenticate"]
    description = header.split('error_description="', 1)[1][:-1]
    assert all(" " <= c <= "~" and c not in '"\\' for c in description), header
    assert description.startswith("claim 'sse': event_types: '")


def test_another_authorization_scheme_is_401(gateway):
    gw = gateway()
    response = gw.client.get("/events", headers={"Authorization": "Basic YWxpY2U6cHc="})
    assert response.status_code == 401
    assert "must be 'Bearer <token>'" in response.json["message"]
    assert "YWxpY2U6cHc" not in response.get_data(as_text=True)


def test_a_ticket_or_cookie_is_used_behind_a_site_with_http_basic_auth(gateway):
    """A browser on a site behind Basic auth (staging, an intranet) sends its Authorization:
    Basic with every same-origin request, EventSource's too: it is not our credential."""
    gw = gateway(auth_cookie_name="sse_token")
    basic = {"Authorization": "Basic c3RhZmY6cGFzc3dvcmQ="}
    ticket = gw.client.post("/tickets", headers=bearer(token("carol"))).json["ticket"]
    response = gw.client.get(f"/events?ticket={ticket}", headers=basic)
    assert response.status_code == 200 and subscribed(gw).subject == "carol"
    response.close()
    gw.broker.mailbox.clear()
    gw.client.set_cookie("sse_token", token("bob"))
    response = gw.client.get("/events", headers=basic)
    assert response.status_code == 200 and subscribed(gw).subject == "bob"
    response.close()
    assert gw.client.post("/tickets", headers=basic).status_code == 201


def test_the_bearer_scheme_is_read_whatever_its_case(gateway):
    """RFC 7235: the scheme is case-insensitive; a client library sending `bearer <token>`
    (or BEARER) was told 401 "must be 'Bearer <token>'" with a good token."""
    gw = gateway()
    for scheme in ("bearer", "BEARER", "bEaReR"):
        response = gw.client.get("/events", headers={"Authorization": f"{scheme} {token()}"})
        assert response.status_code == 200, (scheme, response.status_code)
        assert subscribed(gw).subject == "alice"
        response.close()
        gw.broker.mailbox.clear()
    tickets = gw.client.post("/tickets", headers={"Authorization": f"bearer {token('bob')}"})
    assert tickets.status_code == 201


def test_an_empty_bearer_is_401(gateway):
    response = gateway().client.get("/events", headers={"Authorization": "Bearer  "})
    assert response.status_code == 401
    assert "must be 'Bearer <token>'" in response.json["message"]


def test_an_empty_bearer_is_401_even_with_a_good_cookie(gateway):
    """`Authorization: Bearer ` with its token left out (a variable unset in a script): the
    client meant to send a token and is told so; the browser's cookie does not silently
    stand in for it as another subject."""
    gw = gateway(auth_cookie_name="sse_token")
    gw.client.set_cookie("sse_token", token("bob"))
    for value in ("Bearer ", "Bearer    "):
        response = gw.client.get("/events", headers={"Authorization": value})
        assert response.status_code == 401, (value, response.status_code)
        assert "must be 'Bearer <token>'" in response.json["message"]
        response.close()
    assert nothing_started(gw)


def test_a_bearer_after_two_spaces_is_read(gateway):
    """`Authorization: Bearer  <token>` (two spaces, a header built by hand): the token is
    the same; it was refused 401 as a malformed token."""
    gw = gateway()
    response = gw.client.get("/events", headers={"Authorization": f"Bearer  {token()}"})
    assert response.status_code == 200 and subscribed(gw).subject == "alice"
    response.close()


def test_optional_mode_with_an_empty_anonymous_scope_is_401_not_403(gateway):
    gw = gateway(auth_mode="optional")
    response = gw.client.get("/events")
    assert response.status_code == 401
    assert response.json["message"].startswith("credential required")


# -- 400: tokens in the URL ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["access_token", "token", "jwt", "Access_Token"])
def test_a_token_in_the_url_is_400_saying_to_use_a_ticket(gateway, name):
    gw = gateway()
    secret = token()
    response = gw.client.get(f"/events?{name}={secret}")
    assert response.status_code == 400 and response.json["error"] == "bad_request"
    assert "use a ticket: POST /tickets" in response.json["message"]
    assert secret not in response.get_data(as_text=True)
    assert nothing_started(gw)


def test_with_auth_off_a_token_in_the_url_is_400_without_pointing_to_tickets(gateway):
    response = gateway(auth_mode="off").client.get("/events?access_token=x")
    assert response.status_code == 400
    message = response.json["message"]
    assert "POST /tickets" not in message and "AUTH_MODE=off" in message


def test_a_token_in_the_url_is_400_even_with_a_good_bearer(gateway):
    gw = gateway()
    response = gw.client.get("/events?access_token=x", headers=bearer(token()))
    assert response.status_code == 400


# -- 200: who reads, and what -------------------------------------------------------------------

def test_a_good_bearer_opens_a_stream_as_its_subject_within_its_scope(gateway, caplog):
    gw = gateway()
    credential = token("alice")
    with caplog.at_level(logging.INFO):
        response = gw.client.get("/events", headers=bearer(credential))
    assert response.status_code == 200
    info = subscribed(gw)
    claims = jwt.decode(credential, options={"verify_signature": False})
    leeway = gw.app.config["SETTINGS"].auth_jwt_leeway_seconds     # accepted until then
    assert (info.subject, info.scope, info.expires_at) == (
        "alice", "event_types=order.*&sources=*", float(claims["exp"]) + leeway)
    assert info.filter == Filter(("order.*",), ())
    connected = [r.getMessage() for r in caplog.records if "connected from" in r.getMessage()]
    assert connected and "subject 'alice'" in connected[0]
    assert credential not in caplog.text
    response.close()
    assert streams(gw) == 0 and gw.limiter.per_subject == {}


def test_a_credential_in_the_user_agent_is_not_shown_by_getclients(gateway):
    """GetClients shows each stream's User-Agent: a client that put its token there had it
    listed whole, where the README says no answer of GetClients holds one."""
    gw = gateway()
    credential = token("alice")
    response = gw.client.get("/events", headers=bearer(credential)
                             | {"User-Agent": f"bot/1 ({credential})"})
    assert response.status_code == 200
    assert subscribed(gw).user_agent == "bot/1 (***)"
    response.close()


def test_a_user_agent_is_kept_to_200_characters(gateway):
    """gunicorn takes a User-Agent of 8,190 bytes: kept whole, each stream held it for its
    life, and a GetClients page of 1,000 such clients was 8 MB, twice what a gRPC client
    takes by default."""
    gw = gateway()
    response = gw.client.get("/events", headers=bearer(token()) | {"User-Agent": "b" * 8000})
    assert response.status_code == 200
    assert subscribed(gw).user_agent == "b" * 200
    response.close()


def test_the_request_is_narrowed_to_the_scope(gateway):
    gw = gateway()
    response = gw.client.get("/events?event_types=order.created,user.created&sources=shop",
                             headers=bearer(token()))
    assert response.status_code == 200
    assert subscribed(gw).filter == Filter(("order.created",), ("shop",))
    response.close()


def test_a_request_that_needs_both_request_and_scope_checked_gets_a_scoped_filter(gateway):
    gw = gateway()
    response = gw.client.get("/events?event_types=*.created", headers=bearer(token()))
    assert response.status_code == 200
    assert isinstance(subscribed(gw).filter, ScopedFilter)
    response.close()


def test_a_request_wholly_outside_the_scope_is_403_naming_what_was_refused(gateway):
    gw = gateway()
    response = gw.client.get("/events?event_types=user.created,billing.*",
                             headers=bearer(token()))
    assert response.status_code == 403 and response.json["error"] == "forbidden"
    assert response.json["message"] == "outside your scope: event_types=billing.*,user.created"
    assert nothing_started(gw)


def test_optional_mode_without_a_credential_reads_the_anonymous_scope(gateway):
    gw = gateway(auth_mode="optional", auth_anonymous_scope=Scope.parse("blog.*", "*"))
    response = gw.client.get("/events")
    assert response.status_code == 200
    info = subscribed(gw)
    assert (info.subject, info.expires_at, info.filter) == (None, None, Filter(("blog.*",), ()))
    response.close()
    outside = gw.client.get("/events?event_types=link.*")
    assert outside.status_code == 403 and "event_types=link.*" in outside.json["message"]


def test_auth_off_opens_streams_without_a_credential_and_has_no_tickets(gateway):
    gw = gateway(auth_mode="off")
    response = gw.client.get("/events")
    assert response.status_code == 200 and subscribed(gw).subject is None
    response.close()
    tickets = gw.client.post("/tickets", headers=bearer(token()))
    assert tickets.status_code == 404 and tickets.json["error"] == "not_found"
    assert tickets.json["message"].startswith("auth is off")


# -- 429 per subject ----------------------------------------------------------------------------

def test_a_subject_past_its_stream_limit_is_429_with_retry_after(gateway):
    gw = gateway(sse_max_clients_per_subject=1)
    first = gw.client.get("/events", headers=bearer(token("alice")))
    assert first.status_code == 200
    again = gw.client.get("/events", headers=bearer(token("alice")),
                          environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert again.status_code == 429 and again.json["error"] == "too_many_streams_per_subject"
    assert "SSE_MAX_CLIENTS_PER_SUBJECT" in again.json["message"]
    assert int(again.headers["Retry-After"]) >= 1
    other = gw.client.get("/events", headers=bearer(token("bob")))
    assert other.status_code == 200
    first.close()
    other.close()
    assert gw.limiter.per_subject == {}
    after = gw.client.get("/events", headers=bearer(token("alice")))
    assert after.status_code == 200
    after.close()


# -- tickets ------------------------------------------------------------------------------------

def test_post_tickets_gives_a_ticket_that_opens_one_stream_once(gateway):
    gw = gateway()
    response = gw.client.post("/tickets", headers=bearer(token("alice")))
    assert response.status_code == 201 and response.headers["Cache-Control"] == "no-store"
    body = response.json
    assert set(body) == {"ticket", "expires_in", "expires_at"} and body["expires_in"] == 30
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert body["expires_at"].endswith("Z") and abs(expires.timestamp() - time.time() - 30) < 5

    stream = gw.client.get(f"/events?ticket={body['ticket']}")
    assert stream.status_code == 200 and subscribed(gw).subject == "alice"
    stream.close()
    reused = gw.client.get(f"/events?ticket={body['ticket']}")
    assert reused.status_code == 401
    assert reused.json["message"].startswith("ticket already used")
    assert "POST /tickets" in reused.json["message"]
    assert body["ticket"] not in reused.get_data(as_text=True)


def test_a_refused_stream_or_a_head_does_not_spend_the_ticket(gateway):
    gw = gateway(sse_max_clients_per_ip=1)
    ticket = gw.client.post("/tickets", headers=bearer(token("alice"))).json["ticket"]
    first = gw.client.get("/events", headers=bearer(token("bob")))
    assert first.status_code == 200
    assert gw.client.get(f"/events?ticket={ticket}").status_code == 429
    first.close()
    assert gw.client.head(f"/events?ticket={ticket}").status_code == 200
    stream = gw.client.get(f"/events?ticket={ticket}")      # the retry, same URL
    assert stream.status_code == 200 and gw.broker.of(Subscribe)[-1].info.subject == "alice"
    stream.close()
    for again in (gw.client.get, gw.client.head):
        reused = again(f"/events?ticket={ticket}")
        assert reused.status_code == 401 and streams(gw) == 0
    assert gw.client.get(f"/events?ticket={ticket}").json["message"].startswith(
        "ticket already used")


def test_a_ticket_is_not_spent_by_a_stream_the_stopping_worker_refuses(gateway):
    """SIGTERM while the request waits for its admission (the limiter's answer, up to 10 s in a
    reconnect storm): the worker answers 503 and the ticket stays unspent, so the retry with
    the same URL opens it on another worker of the instance."""
    gw = gateway()
    ticket = gw.client.post("/tickets", headers=bearer(token("alice"))).json["ticket"]
    stopping, limiter = gw.door.stopping, DirectRef(gw.limiter)

    class StopsWhileAdmitting:
        def ask(self, message, timeout=None, block=True):
            answer = limiter.ask(message, timeout, block)
            stopping.set()                  # the worker is told to stop meanwhile
            return answer

        tell = limiter.tell

    gw.door.limiter = StopsWhileAdmitting()
    refused = gw.client.get(f"/events?ticket={ticket}")
    assert refused.status_code == 503 and streams(gw) == 0
    stopping.clear()                        # the retry, on a worker that is not stopping
    gw.door.limiter = limiter
    stream = gw.client.get(f"/events?ticket={ticket}")
    assert stream.status_code == 200 and subscribed(gw).subject == "alice"
    stream.close()


def test_a_ticket_is_not_spent_by_a_stream_a_dead_broker_refuses(gateway):
    """The broker died (the worker is about to retire; its stopping flag is not set yet): the
    stream is refused 503 before its ticket is spent, so the retry opens it elsewhere."""
    gw = gateway()
    ticket = gw.client.post("/tickets", headers=bearer(token("alice"))).json["ticket"]
    live = gw.door.broker

    class Dead(FakeRef):
        def tell(self, message):
            raise pykka.ActorDeadError("broker stopped")

        def is_alive(self):
            return False
    gw.door.broker = Dead()
    refused = gw.client.get(f"/events?ticket={ticket}")
    assert refused.status_code == 503 and streams(gw) == 0
    gw.door.broker = live
    stream = gw.client.get(f"/events?ticket={ticket}")
    assert stream.status_code == 200 and subscribed(gw).subject == "alice"
    stream.close()


def test_a_ticket_opens_one_stream_when_two_requests_race_past_admission(gateway):
    gw = gateway()
    ticket = gw.client.post("/tickets", headers=bearer(token("alice"))).json["ticket"]
    identity = gw.auth.check_ticket(ticket).identity       # checked by a second request
    first = gw.client.get(f"/events?ticket={ticket}")
    assert first.status_code == 200
    with pytest.raises(InvalidToken, match="ticket already used"):
        gw.auth.redeem(ticket)
    assert identity.subject == "alice" and streams(gw) == 1
    first.close()


@pytest.mark.parametrize("mode", ["required", "optional"])
def test_post_tickets_without_a_token_is_401(gateway, mode):
    gw = gateway(auth_mode=mode, auth_anonymous_scope=Scope.parse("*", "*"))
    response = gw.client.post("/tickets")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    bad = gw.client.post("/tickets", headers=bearer(token(exp_in=-3600)))
    assert bad.status_code == 401 and bad.json["message"].startswith("token expired")


def test_post_tickets_without_a_token_says_to_send_one_not_to_use_a_ticket(gateway):
    gw = gateway(auth_cookie_name="sse_token")
    message = gw.client.post("/tickets").json["message"]
    assert message.startswith("credential required: send Authorization: Bearer <token>")
    assert "sse_token cookie" in message and "ticket" not in message


@pytest.mark.parametrize("mode", ["required", "off"])
def test_post_tickets_refuses_a_token_in_the_url_as_events_does(gateway, mode):
    gw = gateway(auth_mode=mode)
    response = gw.client.post(f"/tickets?access_token={token()}")
    assert response.status_code == 400 and response.json["error"] == "bad_request"
    assert ("use a ticket" if mode == "required" else "AUTH_MODE=off") in response.json["message"]
    assert response.json["message"] == gw.client.get("/events?access_token=x").json["message"]


def test_a_ticket_cannot_buy_another_ticket(gateway):
    gw = gateway()
    ticket = gw.client.post("/tickets", headers=bearer(token())).json["ticket"]
    assert gw.client.post(f"/tickets?ticket={ticket}").status_code == 401


def test_a_forged_ticket_is_401(gateway):
    gw = gateway()
    ticket = gw.client.post("/tickets", headers=bearer(token())).json["ticket"]
    body, mac = ticket.split(".")
    forged = gw.client.get(f"/events?ticket={body}.{mac[::-1]}")
    assert forged.status_code == 401 and forged.json["message"].startswith(
        ("bad ticket signature", "malformed ticket"))


def test_post_tickets_is_rate_limited(gateway):
    gw = gateway(rate_limit_burst_size=2)
    codes = [gw.client.post("/tickets", headers=bearer(token())).status_code for _ in range(3)]
    assert codes == [201, 201, 429]


# -- the order of credentials -------------------------------------------------------------------

def test_bearer_wins_over_cookie_and_cookie_over_ticket(gateway):
    gw = gateway(auth_cookie_name="sse_token")
    ticket = gw.client.post("/tickets", headers=bearer(token("carol"))).json["ticket"]
    gw.client.set_cookie("sse_token", token("bob"))
    response = gw.client.get(f"/events?ticket={ticket}", headers=bearer(token("alice")))
    assert response.status_code == 200 and subscribed(gw).subject == "alice"
    response.close()
    gw.broker.mailbox.clear()
    response = gw.client.get(f"/events?ticket={ticket}")
    assert response.status_code == 200 and subscribed(gw).subject == "bob"
    response.close()
    gw.broker.mailbox.clear()
    gw.client.delete_cookie("sse_token")
    response = gw.client.get(f"/events?ticket={ticket}")     # not used up by the two above
    assert response.status_code == 200 and subscribed(gw).subject == "carol"
    response.close()


def test_a_bad_bearer_is_not_rescued_by_a_good_cookie(gateway):
    gw = gateway(auth_cookie_name="sse_token")
    gw.client.set_cookie("sse_token", token("bob"))
    response = gw.client.get("/events", headers=bearer(token(secret=b"x" * 32)))
    assert response.status_code == 401


def test_the_cookie_is_read_only_when_named(gateway):
    gw = gateway()
    gw.client.set_cookie("sse_token", token("bob"))
    assert gw.client.get("/events").status_code == 401
    tickets = gw.client.post("/tickets")
    assert tickets.status_code == 401


def raw_get(app, path, cookie: str, method="GET") -> int:
    """The status of a request whose Cookie header is as given (the test client rewrites it
    from its own jar)."""
    from werkzeug.test import EnvironBuilder, run_wsgi_app
    path, _, query = path.partition("?")
    environ = EnvironBuilder(path=path, query_string=query, method=method).get_environ()
    environ["HTTP_COOKIE"] = cookie
    body, status, _headers = run_wsgi_app(app, environ, buffered=False)
    getattr(body, "close", lambda: None)()
    return int(status.split()[0])


def test_a_cookie_in_another_encoding_is_read_as_flask_reads_it_not_a_500(gateway):
    """Another application of the domain set `theme=café` in Latin-1; the browser sends it
    with every request. GET /events (served ahead of Flask) answered it with a 500."""
    gw = gateway(auth_cookie_name="sse_token")
    ticket = gw.client.post("/tickets", headers=bearer(token("carol"))).json["ticket"]
    odd = "theme=caf\xe9"
    assert raw_get(gw.app, "/events", odd) == 401
    assert raw_get(gw.app, "/events", odd, method="HEAD") == 401
    assert raw_get(gw.app, f"/events?ticket={ticket}", odd) == 200
    assert subscribed(gw).subject == "carol"
    gw.broker.mailbox.clear()
    assert raw_get(gw.app, "/events", f"{odd}; sse_token={token('bob')}") == 200
    assert subscribed(gw).subject == "bob"


def test_a_cookie_buys_a_ticket(gateway):
    gw = gateway(auth_cookie_name="sse_token")
    gw.client.set_cookie("sse_token", token("bob"))
    assert gw.client.post("/tickets").status_code == 201


def test_a_token_while_no_key_set_could_be_fetched_is_503_with_retry_after(gateway):
    """The key server down at start: 401 told every client its token was bad (a browser's
    EventSource, or a client that then throws its token away)."""
    def down():
        raise OSError("connection refused")

    gw = gateway(jwks_fetch=down, auth_jwt_algorithms=("RS256",), auth_jwt_secret=None,
                 auth_jwks_url="https://issuer.example/jwks.json")
    gw.auth.jwks.refresh()
    rs256 = jwt.encode({"sub": "bob", "sse": SCOPE, "exp": int(time.time()) + 300},
                       RSA_KEY, algorithm="RS256", headers={"kid": "k1"})
    for answer in (gw.client.get("/events", headers=bearer(rs256)),
                   gw.client.post("/tickets", headers=bearer(rs256))):
        assert answer.status_code == 503 and answer.json["error"] == "unavailable"
        assert answer.headers["Retry-After"] == "1", answer.headers
        assert "AUTH_JWKS_URL" in answer.json["message"] and rs256 not in answer.get_data(True)
    assert nothing_started(gw)


# -- CORS with credentials ----------------------------------------------------------------------

def test_cookie_mode_echoes_a_listed_origin_with_credentials_never_a_star(gateway):
    gw = gateway(auth_cookie_name="sse_token", cors_allowed_origins=(ORIGIN,))
    gw.client.set_cookie("sse_token", token("bob"))
    response = gw.client.get("/events", headers={"Origin": ORIGIN})
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    response.close()
    refused = gw.client.get("/events", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert "Access-Control-Allow-Credentials" not in refused.headers
    refused.close()


def test_a_cookie_sent_by_a_page_of_an_origin_not_allowed_is_403_and_opens_nothing(gateway):
    """The browser hides such a stream from the page, but it was opened: it spent the user's
    per-subject slots and the server's work, as many times as a hostile page liked."""
    for origins in ((ORIGIN,), ("*",)):             # with * credentials are never allowed
        gw = gateway(auth_cookie_name="sse_token", cors_allowed_origins=origins,
                     sse_max_clients_per_subject=1)
        gw.client.set_cookie("sse_token", token("bob"))
        for sent in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                     {"Origin": "http://["}, {"Origin": "http://localhost.evil.example"},
                     {"Origin": "https://evil.example", "Sec-Fetch-Site": "same-site"}):
            for answer in (gw.client.get("/events", headers=sent),
                           gw.client.post("/tickets", headers=sent)):
                assert answer.status_code == 403, (origins, sent, answer.status_code)
                assert answer.json["error"] == "origin_not_allowed"
                assert "CORS_ALLOWED_ORIGINS" in answer.json["message"]
        assert nothing_started(gw)
        for sent in ({}, {"Origin": "http://localhost"},     # no Origin, or the gateway's own
                     {"Origin": "https://app.internal", "Sec-Fetch-Site": "same-origin"},
                     {"Origin": "https://evil.example", **bearer(token("bob"))}):
            answer = gw.client.get("/events", headers=sent)
            assert answer.status_code == 200, (origins, sent, answer.status_code)
            answer.close()
        stop_all()      # a closed stream's actor stops in its own time


def test_a_cookie_sent_by_another_site_s_frame_or_link_without_origin_is_403(gateway):
    """A navigation or an <iframe src=/events> sends no Origin: a hostile page could still
    open many streams with the user's cookie. The browser's Sec-Fetch-Site says whose it is."""
    gw = gateway(auth_cookie_name="sse_token", cors_allowed_origins=(ORIGIN,))
    gw.client.set_cookie("sse_token", token("bob"))
    for site in ("cross-site", "same-site"):
        answer = gw.client.get("/events", headers={"Sec-Fetch-Site": site})
        assert answer.status_code == 403 and answer.json["error"] == "origin_not_allowed"
    assert nothing_started(gw)
    for sent in ({"Sec-Fetch-Site": "none"},                # typed into the address bar
                 {"Sec-Fetch-Site": "cross-site", "Origin": ORIGIN}):     # a listed page
        answer = gw.client.get("/events", headers=sent)
        assert answer.status_code == 200, (sent, answer.status_code)
        answer.close()


def test_an_origin_that_only_begins_with_a_listed_one_gets_neither_cookie_nor_credentials(
        gateway):
    """CORS_ALLOWED_ORIGINS=https://app.example: a page of https://app.example.evil.test (a
    domain anyone may register) must not open streams with the user's cookie, nor be let
    read the answers with the user's credentials."""
    gw = gateway(auth_cookie_name="sse_token", cors_allowed_origins=(ORIGIN,))
    gw.client.set_cookie("sse_token", token("bob"))
    for page in (f"{ORIGIN}.evil.test", f"{ORIGIN}evil.test", f"{ORIGIN}:8443"):
        sent = {"Origin": page, "Sec-Fetch-Site": "cross-site"}
        assert not origin_listed(page, (ORIGIN,))
        assert cookie_allowed(sent, (ORIGIN,)) is False
        for answer in (gw.client.get("/events", headers=sent),
                       gw.client.post("/tickets", headers=sent)):
            assert answer.status_code == 403, (page, answer.status_code)
            assert answer.json["error"] == "origin_not_allowed"
            assert "Access-Control-Allow-Origin" not in answer.headers
            assert "Access-Control-Allow-Credentials" not in answer.headers
    assert nothing_started(gw)


def test_a_page_on_another_port_of_the_gateways_host_does_not_get_the_cookie(gateway):
    """A dev server's page at http://localhost:3000 and the gateway at localhost:8084 are two
    origins (RFC 6454: the port is part of it); an older browser sends no Sec-Fetch-Site.
    Unless CORS_ALLOWED_ORIGINS lists the page, its requests may not use the cookie."""
    gw = gateway(auth_cookie_name="sse_token")
    gw.client.set_cookie("sse_token", token("bob"))
    sent = {"Origin": "http://localhost:3000", "Host": "localhost:8084"}
    assert cookie_allowed(sent, ()) is False
    answer = gw.client.get("/events", headers=sent)
    assert answer.status_code == 403 and answer.json["error"] == "origin_not_allowed"
    assert nothing_started(gw)
    own = gw.client.get("/events", headers={"Origin": "http://localhost:8084",
                                             "Host": "localhost:8084"})
    assert own.status_code == 200 and subscribed(gw).subject == "bob"
    own.close()


@pytest.mark.parametrize("sent", [
    # the browser says the page is of another site: its word wins over a matching Host
    {"Origin": "https://gw.example", "Host": "gw.example", "Sec-Fetch-Site": "cross-site"},
    {"Origin": "https://gw.example", "Host": "gw.example", "Sec-Fetch-Site": "same-site"},
    # an opaque origin (a sandboxed frame, a file: page) and no Host to compare it with
    {"Origin": "null", "Host": ""},
    {"Origin": "null"},
    {"Origin": "https://gw.example"},
], ids=["cross-site", "same-site", "null-empty-host", "null-no-host", "no-host"])
def test_a_cookie_is_not_allowed_to_a_request_the_gateways_host_does_not_vouch_for(sent):
    """The cookie is the browser's: a request it marks as another site's, or whose Origin
    cannot be told to be the gateway's own, may not use it (403, never 200 nor a 500)."""
    assert cookie_allowed(sent, (ORIGIN,)) is False


def test_a_page_of_another_origin_sending_a_bearer_gets_a_ticket_despite_the_cookie(gateway):
    """A page not in CORS_ALLOWED_ORIGINS that sends its own Bearer token (and the browser
    adds the cookie): the token is what is read, as on GET /events, so POST /tickets gives a
    ticket for the token's subject; it was 403 origin_not_allowed for the unread cookie."""
    gw = gateway(auth_cookie_name="sse_token", cors_allowed_origins=(ORIGIN,))
    gw.client.set_cookie("sse_token", token("bob"))
    sent = {"Origin": "https://other.example", **bearer(token("alice"))}
    response = gw.client.post("/tickets", headers=sent)
    assert response.status_code == 201, response.get_data(as_text=True)
    gw.client.delete_cookie("sse_token")
    stream = gw.client.get(f"/events?ticket={response.json['ticket']}")
    assert stream.status_code == 200 and subscribed(gw).subject == "alice"
    stream.close()


def test_a_star_origin_never_allows_credentials(gateway):
    gw = gateway(auth_cookie_name="sse_token", cors_allowed_origins=("*",))
    response = gw.client.get("/events", headers={"Origin": ORIGIN, **bearer(token())})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers
    response.close()


def test_a_preflight_for_post_tickets_allows_the_authorization_header(gateway):
    gw = gateway(cors_allowed_origins=(ORIGIN,))
    response = gw.client.options("/tickets", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization"})
    assert response.status_code == 204
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"].split(", ")
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    off = gateway(auth_mode="off", cors_allowed_origins=(ORIGIN,)).client.options(
        "/events", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"})
    assert off.headers["Access-Control-Allow-Headers"] == (
        "Content-Type, Last-Event-ID, Cache-Control")


def test_errors_carry_the_cors_headers_so_a_page_can_read_them(gateway):
    gw = gateway(cors_allowed_origins=(ORIGIN,))
    response = gw.client.get("/events", headers={"Origin": ORIGIN})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


# -- no credential in a log line ----------------------------------------------------------------

def test_the_access_log_masks_a_ticket_however_its_name_is_written(gateway, caplog):
    gw = gateway(access_log=True)
    ticket = gw.client.post("/tickets", headers=bearer(token())).json["ticket"]
    with caplog.at_level(logging.INFO, logger="web.access"):
        for query in (f"ticket={ticket}", f"%74icket={ticket}", f"TICKET={ticket}",
                      f"jwt={ticket}", f"access%5Ftoken={ticket}"):
            response = gw.client.get(f"/events?event_types=order.x&{query}")
            response.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "web.access"]
    assert len(lines) == 5
    assert ticket not in caplog.text and ticket[:20] not in caplog.text
    assert all("event_types=order.x" in line and "REDACTED" in line for line in lines)


def test_no_log_line_of_a_stream_holds_its_token_or_ticket(gateway, caplog):
    gw = gateway(access_log=True)
    credential = token("alice")
    ticket = gw.client.post("/tickets", headers=bearer(credential)).json["ticket"]
    with caplog.at_level(logging.DEBUG):
        response = gw.client.get(f"/events?ticket={ticket}")
        [subscribe] = gw.broker.of(Subscribe)
        subscribe.outbox.close("test over", b": bye\n\n")
        body = b"".join(response.response)
        response.close()
        gw.client.get(f"/events?ticket={ticket}").close()        # 401: reused
    assert b"subject alice" in body
    assert "subject 'alice'" in caplog.text and "disconnected" in caplog.text
    assert credential not in caplog.text and ticket not in caplog.text


def test_a_credential_sent_where_it_is_not_read_stays_out_of_the_log(gateway, caplog):
    gw = gateway(access_log=True, auth_mode="optional", auth_anonymous_scope=Scope.parse("*", "*"))
    credential = token("alice")
    ticket = gw.client.post("/tickets", headers=bearer(credential)).json["ticket"]
    with caplog.at_level(logging.DEBUG):
        for path, headers in ((f"/events?id_token={credential}", {}),
                              (f"/events?access-token={credential}", {}),
                              (f"/events?{ticket}", {}),
                              ("/events", {"Last-Event-ID": credential})):
            gw.client.get(path, headers=headers).close()
        gw.client.get(f"/events/{credential}").close()        # a URL built wrongly: 404
    assert caplog.text.count("with a Last-Event-ID this gateway did not issue") == 1
    assert caplog.text.count("GET /events") == 5 and "GET /events/*** 404" in caplog.text
    assert credential not in caplog.text and ticket not in caplog.text
    assert credential[:40] not in caplog.text and ticket[:40] not in caplog.text


def test_a_malformed_request_does_not_use_up_its_ticket(gateway):
    gw = gateway()
    ticket = gw.client.post("/tickets", headers=bearer(token())).json["ticket"]
    assert gw.client.get(f"/events?ticket={ticket}&since=yesterday").status_code == 400
    response = gw.client.get(f"/events?ticket={ticket}")
    assert response.status_code == 200
    response.close()


def test_the_connect_line_says_from_when_a_since_stream_reads(gateway, caplog):
    """A since= stream can make the gateway read much of Kafka (the replay's lines count the
    records), but its connect line said only '(event_types=...)': the operator could not tell
    it from a plain open."""
    gw = gateway()
    with caplog.at_level(logging.INFO):
        response = gw.client.get("/events?since=2026-01-06T12:00:00Z",
                                 headers=bearer(token("alice")))
    assert response.status_code == 200
    [connected] = [r.getMessage() for r in caplog.records if "connected from" in r.getMessage()]
    assert connected.endswith(" since 2026-01-06T12:00:00.000Z"), connected
    response.close()


@pytest.mark.parametrize("types", [["a b"], [f"*{n}" for n in range(33)]])
def test_a_signed_ticket_whose_scope_these_rules_refuse_is_a_401_not_a_500(gateway, types):
    """A ticket signed with the shared secret by an instance with other rules (an older one,
    before the 32-wildcard budget, in a rolling deploy): its scope failed to parse after the
    ticket was checked, a 500 and a traceback on every retry (found by a fuzz run)."""
    from actors.auth.tickets import Identity, issue
    gw = gateway()
    wide = Identity("alice", tuple(types), ("*",), time.time() + 300)
    ticket = issue(wide, TICKET_SECRET, 30, time.time(), 0.0)
    for ask in (gw.client.head, gw.client.get):
        refused = ask(f"/events?ticket={ticket}")
        assert refused.status_code == 401, refused.status_code
    assert refused.json["error"] == "unauthorized" and "scope" in refused.json["message"]
    assert streams(gw) == 0
