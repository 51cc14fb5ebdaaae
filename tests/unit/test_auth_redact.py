"""Credentials never reach a log line: query values and known secrets are masked."""
import pytest

from actors.auth.redact import mask_credentials, redact_query, redact_text


@pytest.mark.parametrize("raw, redacted", [
    ("/events?ticket=abc.def", "/events?ticket=***"),
    ("/events?event_types=a.*&ticket=abc&sources=b",
     "/events?event_types=a.*&ticket=***&sources=b"),
    ("/events?TOKEN=x&Access_Token=y&jwt=z&jwt=w",
     "/events?TOKEN=***&Access_Token=***&jwt=***&jwt=***"),
    ("/events?%74icket=abc", "/events?%74icket=***"),
    ("/events?ticket=a=b=c", "/events?ticket=***"),
    ("/events?ticket=", "/events?ticket=***"),
])
def test_credential_values_are_masked(raw, redacted):
    assert redact_query(raw) == redacted


@pytest.mark.parametrize("raw, redacted", [
    ("/events?token%20=opaque-secret-123", "/events?token%20=***"),
    ("/events?x=1&%20ticket=abc.def", "/events?x=1&%20ticket=***"),
    ("/events?access_token+=opaque", "/events?access_token+=***"),
    ("/events?%09jwt%09=opaque&y=2", "/events?%09jwt%09=***&y=2"),
])
def test_a_credential_name_with_spaces_around_it_is_masked_too(raw, redacted):
    """A client writing `?token%20=...` (a stray space in its URL template) sends an opaque
    token that must not be written in the access log in clear."""
    assert redact_query(raw) == redacted


@pytest.mark.parametrize("untouched", [
    "/events", "/events?", "/events?event_types=ticket&sources=token",
    "/events?tickets=1&my_token=2", "/events?ticket", "/health?x=1&&y=2"])
def test_everything_else_is_left_as_it_was(untouched):
    assert redact_query(untouched) == untouched


JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTc2NzIyNTYwMH0."
       "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
TICKET = ("WzEsImFsaWNlIixbIioiXSxbIioiXSwxNzY3MjI1NjAwLjAsMTc2NzIyNTU3MC4wLCJhYmMiXQ."
          "Hn4aYl8E7X0cQ3GmX3y8c2Z1vWl0c6Xr2kq9n1Tn2uA")


@pytest.mark.parametrize("raw, redacted", [
    (f"/events?id_token={JWT}", "/events?id_token=***"),
    (f"/events?access-token={JWT}&x=1", "/events?access-token=***&x=1"),
    (f"/events?auth=Bearer%20{JWT}", "/events?auth=***"),
    (f"/events?x=1&{JWT}", "/events?x=1&***"),
    (f"/events?%65yJ{JWT[3:]}=1", "/events?***"),
    (f"/events?state=%57{TICKET[1:]}", "/events?state=***"),
    (f"/events?last_event_id={TICKET}", "/events?last_event_id=***"),
])
def test_a_token_or_ticket_is_masked_whatever_the_parameter_is_called(raw, redacted):
    # a client that puts its credential where the gateway does not read it (a 401 or an
    # anonymous stream) must not leave it in the access log either
    assert redact_query(raw) == redacted


@pytest.mark.parametrize("untouched", [
    "/events?event_types=eyJ.a.b", "/events?last_event_id=Axul6QcDUAYGHfsDUgYGZeQDVAYG",
    "/events?sources=WzEs.x", "/events?sources=finalizeNowAbcdefgh." + "x" * 40])
def test_values_merely_starting_like_a_credential_are_kept(untouched):
    assert redact_query(untouched) == untouched


def _part(raw: bytes) -> str:
    import base64
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _jws(header: bytes) -> str:
    return ".".join(_part(raw) for raw in (header, b'{"sub":"alice"}', b"x" * 32))


# PyJWT takes a header with whitespace before its `{` (json.loads does): such a token does not
# start with `eyJ`, and the access log wrote it whole.
SPACED_JWTS = [_jws(b' {"alg":"HS256","typ":"JWT"}'), _jws(b'\n\t{"alg":"HS256"}'),
               _jws(b'\r\n  {"alg":"ES256"}'), _jws(b'{ "alg":"HS256"}')]


@pytest.mark.parametrize("token", SPACED_JWTS)
def test_a_jwt_whose_header_does_not_start_with_eyJ_is_masked_too(token):
    assert not token.startswith("eyJ")
    assert redact_query(f"/events?id_token={token}&a=1") == "/events?id_token=***&a=1"
    assert mask_credentials(f"id {token!r}") == "id '***'"


def _signed(header: bytes) -> str:
    """An HS256 JWT for alice with this header, signed with b"k" * 32."""
    import hashlib
    import hmac
    signing = ".".join(_part(raw) for raw in (header, b'{"sub":"alice"}'))
    return f"{signing}.{_part(hmac.digest(b'k' * 32, signing.encode(), hashlib.sha256))}"


@pytest.mark.parametrize("header", [
    b'\xef\xbb\xbf{"alg":"HS256"}', '{"alg":"HS256"}'.encode("utf-16-be"),
    '{"alg":"HS256"}'.encode("utf-16")])
def test_a_jwt_whose_header_pyjwt_reads_in_another_encoding_is_masked(header):
    import jwt
    token = _signed(header)
    assert jwt.decode(token, b"k" * 32, algorithms=["HS256"]) == {"sub": "alice"}
    assert mask_credentials(f"id {token}") == "id ***"


def test_a_jwt_with_padded_segments_is_masked():
    import base64
    import hashlib
    import hmac

    import jwt
    claims = base64.urlsafe_b64encode(b'{"sub":"alice1"}').decode()        # ends in ==
    signing = _part(b'{"alg":"HS256"}') + "." + claims
    padded = f"{signing}.{_part(hmac.digest(b'k' * 32, signing.encode(), hashlib.sha256))}"
    assert claims.endswith("==")
    assert jwt.decode(padded, b"k" * 32, algorithms=["HS256"]) == {"sub": "alice1"}
    assert mask_credentials(f"id {padded} x") == "id *** x"


@pytest.mark.parametrize("glue", ["orders_", "x-", "abc"])
def test_a_jwt_glued_to_a_word_is_masked_with_it(glue):
    """Its payload, a JSON object too, is never glued to anything."""
    assert mask_credentials(f"see {glue}{JWT} now") == "see *** now"


def test_a_jwt_after_other_dotted_words_is_masked():
    """A candidate that is no token must not swallow the start of one that follows it."""
    assert mask_credentials(f"abcdefghijkl.mn.{JWT}") == "abcdefghijkl.mn.***"
    assert mask_credentials(f"abcdefghijkl.mn.op.{SPACED_JWTS[0]}") == "abcdefghijkl.mn.op.***"


@pytest.mark.parametrize("kept", [
    "notification_service.user_preferences.updated_successfully_v2",
    # first segments that decode to a `{` and then no JSON (`e` and w-z, 0-9, - or _)
    "external_payment.v1.created", "exchange01.corp.example", "examplehost.prod.local",
    "e2e_results.v1.done", "exceptions.app.errors", "exporter-01.monitoring.svc",
    "ez_checkout.order.placed",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0",
    "com.example.orders.created", "AAAAAAAAAAAAAAAA.AAAA.AAAA", "eyJ.a.b"])
def test_dotted_words_that_are_no_token_are_kept(kept):
    assert mask_credentials(kept) == kept


def test_past_max_parsed_words_that_start_like_a_token_are_masked_unparsed():
    """A text of many words whose first bytes are `{` is hostile (or all tokens): parsing
    each cost microseconds, so the text's first MAX_PARSED are parsed and the rest masked."""
    from actors.auth.redact import MAX_PARSED
    words = [f"exceptions{n:04d}.app.errors" for n in range(MAX_PARSED + 3)]
    assert mask_credentials(" ".join(words)) == " ".join(words[:MAX_PARSED] + ["***"] * 3)


def test_mask_credentials_hides_tokens_and_tickets_inside_any_text():
    assert mask_credentials(f"id {JWT!r} and {TICKET}, done") == "id '***' and ***, done"


def test_redact_text_masks_every_secret_the_longest_first():
    line = 'GET /t?x=abc.defg "Bearer abc.defg" abc'
    assert redact_text(line, ["abc", "abc.defg", ""]) == 'GET /t?x=*** "Bearer ***" ***'


def test_redact_text_without_secrets_changes_nothing():
    assert redact_text("plain line", []) == "plain line"


def test_a_urls_user_and_password_are_masked_wherever_they_stand():
    from actors.auth.redact import mask_url_credentials
    text = "in https://svc:pw@issuer.example/jwks?a=b@c, http://u@h and http://h/p@q"
    assert mask_url_credentials(text) == (
        "in https://***@issuer.example/jwks?a=b@c, http://***@h and http://h/p@q")


def _issued(types: tuple[str, ...] = ("*",)) -> str:
    """A ticket issued now for alice with these event types in scope."""
    import time

    from actors.auth.identity import Identity
    from actors.auth.tickets import issue
    return issue(Identity("alice", types, ("*",), time.time() + 600), b"k" * 32, 30,
                 time.time())


def _deflated_ticket() -> str:
    """A ticket whose scope of 60 event types makes the deflated form (`z` + zlib)."""
    ticket = _issued(tuple(f"orders.type{i}.created" for i in range(60)))
    assert ticket.startswith("z"), ticket[:8]
    return ticket


def test_a_ticket_of_every_version_is_masked_wherever_it_stands():
    """This version's tickets (`[2,`: `WzIs...`, a 32-character MAC) and those of older
    releases (`[1,`: the TICKET above, 43), under a name the gateway does not read."""
    ticket = _issued()
    for each in (ticket, TICKET):
        assert mask_credentials(f"x {each} y") == "x *** y"
        assert redact_query(f"/health?state={each}&a=1") == "/health?state=***&a=1"


def test_a_deflated_ticket_is_masked_too():
    """A token with a long scope gets a deflated ticket (`zeN...`): sent under another name or
    quoted in a line, it was written whole, and usable for its 30 s."""
    ticket = _deflated_ticket()
    assert mask_credentials(f"x {ticket} y") == "x *** y"
    assert redact_query(f"/health?id_token={ticket}&a=1") == "/health?id_token=***&a=1"


def test_masking_takes_time_linear_in_the_text():
    """A Last-Event-ID or User-Agent of "eyJ" repeated (every open masks both, whatever the
    log level): the search was tried at each `eyJ` and ran to the end of the run each time,
    25 ms of the worker for one 8 KB header, 82 ms at 16 K characters."""
    import time
    for hostile in ("eyJ" * 16_000,                 # 48 K characters: ~0.7 s when quadratic
                    "abcdefghijklmnop." * 3_000, "IHsiYWxnIjoiSFMyNTYifQ.a" * 2_000,
                    "ewogICAgICAg." * 3_000):      # `{` and spaces: each fails only in parsing
        started = time.process_time()
        assert JWT not in mask_credentials(f"{hostile} {JWT}")
        assert time.process_time() - started < 0.1
