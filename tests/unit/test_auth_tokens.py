"""Subscriber JWTs: the good ones pass with their identity, every bad one fails with its reason."""
import base64
import hashlib
import hmac
import json
import threading
import time
from itertools import pairwise

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from actors.auth.identity import Identity, InvalidToken
from actors.auth.jwks import JwksCache, KeysUnavailable
from actors.auth.tokens import TokenRules, Verifier

SECRET = b"s" * 32
SCOPE = {"event_types": ["order.*", "user.created"], "sources": ["*"]}


def pem(private_key) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def claims(**extra):
    now = int(time.time())
    return {"sub": "alice", "sse": SCOPE, "exp": now + 300, "iat": now} | extra


def hs_rules(**extra):
    return TokenRules(algorithms=("HS256",), secret=SECRET, **extra)


def refused(verifier: Verifier, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token)
    if token:
        assert token not in caught.value.reason and token not in str(caught.value)
    return caught.value.reason


def b64(data: dict) -> str:
    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# --- good tokens ---------------------------------------------------------------------------

def test_a_good_hs256_token_gives_its_subject_scope_and_expiry():
    payload = claims()
    token = jwt.encode(payload, SECRET, algorithm="HS256")
    assert Verifier(hs_rules()).verify(token) == Identity(
        "alice", ("order.*", "user.created"), ("*",), float(payload["exp"]))


def test_a_good_rs256_token_passes_with_the_public_key(rsa_key):
    verifier = Verifier(TokenRules(algorithms=("RS256",), public_key_pem=pem(rsa_key)))
    assert verifier.verify(jwt.encode(claims(), rsa_key, algorithm="RS256")).subject == "alice"


def test_a_good_es256_token_passes_with_the_public_key():
    key = ec.generate_private_key(ec.SECP256R1())
    verifier = Verifier(TokenRules(algorithms=("ES256",), public_key_pem=pem(key)))
    assert verifier.verify(jwt.encode(claims(sub="bob"), key, algorithm="ES256")).subject == "bob"


def test_a_good_eddsa_token_passes_with_the_public_key():
    key = ed25519.Ed25519PrivateKey.generate()
    verifier = Verifier(TokenRules(algorithms=("EdDSA",), public_key_pem=pem(key)))
    assert verifier.verify(jwt.encode(claims(), key, algorithm="EdDSA")).subject == "alice"


def test_the_subject_and_scope_claims_can_be_renamed():
    rules = hs_rules(subject_claim="uid", scope_claim="streams")
    token = jwt.encode({"uid": "u-7", "streams": {"event_types": ["a"], "sources": ["b"]},
                        "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    assert Verifier(rules).verify(token).scope_sources == ("b",)
    assert refused(Verifier(hs_rules()), token) == "claim 'sub' must name the subject"


@pytest.mark.parametrize("extra", [{"sub": 12345}, {"sub": ["a"]}, {"jti": 7}, {"jti": ["x"]}])
def test_claims_the_gateway_does_not_read_may_have_any_type(extra):
    """PyJWT checks that `sub` and `jti` are strings: a numeric `sub` (a database id) refused a
    token whose subject AUTH_SUBJECT_CLAIM names by another claim, saying the claim 'sub' must
    name the subject; a numeric `jti` was a bare 'invalid token' (an upstream audit)."""
    rules = hs_rules(subject_claim="uid")
    token = jwt.encode({"uid": "u-7", "sse": SCOPE, "exp": int(time.time()) + 60} | extra,
                       SECRET, algorithm="HS256")
    assert Verifier(rules).verify(token).subject == "u-7"
    if "jti" in extra:              # whatever claim names the subject
        assert Verifier(hs_rules()).verify(
            jwt.encode(claims(**extra), SECRET, algorithm="HS256")).subject == "alice"


def test_an_iat_in_the_future_is_refused_past_the_leeway_as_the_readme_says():
    """PyJWT refuses an `iat` later than now + leeway: an issuer whose clock runs fast."""
    token = jwt.encode(claims(iat=int(time.time()) + 60), SECRET, algorithm="HS256")
    assert refused(Verifier(hs_rules(leeway_s=30)), token) == "token not yet valid"
    assert Verifier(hs_rules(leeway_s=90)).verify(token).subject == "alice"


def test_aud_and_iss_pass_when_they_match_and_aud_is_ignored_when_not_configured():
    token = jwt.encode(claims(aud="sse", iss="https://id.example"), SECRET, algorithm="HS256")
    assert Verifier(hs_rules(audience="sse", issuer="https://id.example")).verify(token)
    assert Verifier(hs_rules()).verify(token).subject == "alice"


# --- bad tokens -----------------------------------------------------------------------------

def test_a_wrong_signature_is_refused(rsa_key, other_rsa_key):
    assert refused(Verifier(hs_rules()),
                   jwt.encode(claims(), b"x" * 32, algorithm="HS256")) == "bad signature"
    rs = Verifier(TokenRules(algorithms=("RS256",), public_key_pem=pem(rsa_key)))
    assert refused(rs, jwt.encode(claims(), other_rsa_key, algorithm="RS256")) == "bad signature"


def test_alg_none_is_refused_and_cannot_be_configured():
    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}."
    assert refused(Verifier(hs_rules()), token) == "algorithm not accepted"
    for algorithms in (("none",), ("HS256", "none"), ()):
        with pytest.raises(ValueError, match="accepted algorithms must be chosen from"):
            Verifier(TokenRules(algorithms=algorithms, secret=SECRET))


def hs256_signed_with(key: bytes, payload: dict) -> str:
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(payload)}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def test_an_hs256_token_signed_with_the_rsa_public_key_is_refused(rsa_key):
    token = hs256_signed_with(pem(rsa_key), claims())
    rs_only = Verifier(TokenRules(algorithms=("RS256",), public_key_pem=pem(rsa_key)))
    assert refused(rs_only, token) == "algorithm not accepted"
    both = Verifier(TokenRules(algorithms=("HS256", "RS256"), secret=SECRET,
                               public_key_pem=pem(rsa_key)))
    assert refused(both, token) == "bad signature"     # HS is checked with the secret only
    assert both.verify(hs256_signed_with(SECRET, claims())).subject == "alice"


def test_an_expired_token_is_refused_unless_within_the_leeway():
    token = jwt.encode(claims(exp=int(time.time()) - 30), SECRET, algorithm="HS256")
    assert refused(Verifier(hs_rules()), token) == "token expired"
    assert Verifier(hs_rules(leeway_s=120)).verify(token).subject == "alice"


def test_a_token_whose_exp_has_come_is_refused_without_a_leeway():
    """exp is the moment the token stops being accepted (RFC 7519 4.1.4): with
    AUTH_JWT_LEEWAY_SECONDS=0 a token was accepted for up to a second past it."""
    token = jwt.encode(claims(exp=int(time.time())), SECRET, algorithm="HS256")
    assert refused(Verifier(hs_rules()), token) == "token expired"


def test_a_token_accepted_within_the_leeway_is_accepted_again_on_reconnect():
    """A token past its exp but within AUTH_JWT_LEEWAY_SECONDS opens a stream; the stream's
    reconnect (the same token, remembered as verified) was refused "token expired"."""
    verifier = Verifier(hs_rules(leeway_s=60))
    token = jwt.encode(claims(exp=int(time.time()) - 5), SECRET, algorithm="HS256")
    assert [verifier.verify(token).subject for _ in range(3)] == ["alice"] * 3


def test_a_token_without_exp_is_refused():
    payload = claims()
    del payload["exp"]
    assert refused(Verifier(hs_rules()), jwt.encode(payload, SECRET)) == "missing claim 'exp'"


@pytest.mark.parametrize("exp", [10 ** 400, "9" * 400], ids=["huge-number", "huge-text"])
def test_an_exp_beyond_any_time_is_refused_not_a_crash(exp):
    # PyJWT takes any integer (as text too); 10**400 used to raise OverflowError (a 500),
    # "9"*400 to give a stream that never expires
    token = jwt.encode(claims(exp=exp), SECRET, algorithm="HS256")
    assert refused(Verifier(hs_rules()), token) == "claim 'exp' is out of range"


def test_an_exp_written_as_text_is_read_as_its_number():
    exp = int(time.time()) + 300
    token = jwt.encode(claims(exp=str(exp)), SECRET, algorithm="HS256")
    assert Verifier(hs_rules()).verify(token).expires_at == float(exp)


def test_a_token_not_yet_valid_is_refused_unless_within_the_leeway():
    token = jwt.encode(claims(nbf=int(time.time()) + 60), SECRET, algorithm="HS256")
    assert refused(Verifier(hs_rules()), token) == "token not yet valid"
    assert Verifier(hs_rules(leeway_s=120)).verify(token).subject == "alice"


def test_a_wrong_or_missing_audience_is_refused():
    verifier = Verifier(hs_rules(audience="sse"))
    assert refused(verifier, jwt.encode(claims(aud="billing"), SECRET)) == "wrong audience"
    assert refused(verifier, jwt.encode(claims(), SECRET)) == "missing claim 'aud'"


def test_a_wrong_issuer_is_refused():
    verifier = Verifier(hs_rules(issuer="https://id.example"))
    assert refused(verifier, jwt.encode(claims(iss="https://evil.example"), SECRET)) == (
        "wrong issuer")


@pytest.mark.parametrize("issuer", ["https://id.example", "id.example", "h", ""])
def test_an_issuer_that_is_only_part_of_auth_issuer_is_refused(issuer):
    """PyJWT 2.10.0 (setup.cfg's floor then) tested a string issuer with `in`
    (CVE-2024-53861): with AUTH_ISSUER=https://id.example.com every one of these passed."""
    verifier = Verifier(hs_rules(issuer="https://id.example.com"))
    assert refused(verifier, jwt.encode(claims(iss=issuer), SECRET)) == "wrong issuer"


@pytest.mark.parametrize("junk", ["!!!!", "==", "\n", "*"])
def test_a_signature_with_junk_after_it_is_refused(junk):
    """PyJWT before 2.14 dropped characters outside base64url before checking the signature
    (GHSA-hxm8-2xgr-2p9m): a captured token with junk appended passed as a different string."""
    token = jwt.encode(claims(), SECRET)
    assert Verifier(hs_rules()).verify(token).subject == "alice"
    assert refused(Verifier(hs_rules()), token + junk) == "malformed token"


@pytest.mark.parametrize("garbage", [
    "", "garbage", "a.b.c", "..", "x" * 20000, "\u00e9.\u00e9.\u00e9"])
def test_garbage_is_refused_as_malformed(garbage):
    assert refused(Verifier(hs_rules()), garbage) == "malformed token"


def test_a_header_without_alg_is_refused():
    assert refused(Verifier(hs_rules()), "e30.e30.") == "algorithm not accepted"


def test_a_header_whose_kid_is_not_text_is_refused_as_malformed():
    token = f"{b64({'alg': 'HS256', 'kid': 7})}.{b64(claims())}.c2ln"
    assert refused(Verifier(hs_rules()), token) == "malformed token"


@pytest.mark.parametrize("header", [[1], "HS256", 7, None], ids=["list", "text", "number", "null"])
def test_a_header_that_is_not_a_json_object_is_refused_as_malformed(header):
    """A header segment holding JSON that is not an object: a 500 instead of a 401."""
    token = f"{b64(header)}.{b64(claims())}.c2ln"
    assert refused(Verifier(hs_rules()), token) == "malformed token"


@pytest.mark.parametrize("crit", [["b64"], ["exp"], [], "b64"],
                         ids=["b64", "exp", "empty", "not-a-list"])
def test_a_header_with_critical_extensions_is_refused_as_malformed(crit):
    """RFC 7515 4.1.11: none are understood here, so such a token cannot be read; it was
    refused as "invalid token", a reason that says nothing of what is wrong with it."""
    token = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"crit": crit})
    assert refused(Verifier(hs_rules()), token) == "malformed token"


def test_the_hs_secret_is_checked_once_not_for_every_token(monkeypatch):
    from jwt.algorithms import HMACAlgorithm
    tokens = {subject: jwt.encode(claims(sub=subject), SECRET) for subject in ("al", "bo")}
    wrong = jwt.encode(claims(), b"y" * 32)
    checks = []
    real = HMACAlgorithm._is_der_key
    monkeypatch.setattr(HMACAlgorithm, "_is_der_key",
                        staticmethod(lambda key: checks.append(key) or real(key)))
    verifier = Verifier(hs_rules())
    assert checks == [SECRET]                   # refused if it were a public key in disguise
    for subject, token in tokens.items():
        assert verifier.verify(token).subject == subject
    assert checks == [SECRET]
    assert refused(verifier, wrong) == "bad signature"


def test_a_token_that_is_not_a_string_is_refused():
    with pytest.raises(InvalidToken, match="malformed token"):
        Verifier(hs_rules()).verify(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("scope, says", [
    (None, "must hold event_types and sources"),
    ("order.*", "must hold event_types and sources"),
    (["order.*"], "must hold event_types and sources"),
    ({}, "event_types: a non-empty list"),                  # never "unrestricted"
    ({"event_type": ["a"], "sources": ["*"]}, "event_types: a non-empty list"),   # a typo
    ({"event_types": ["a"]}, "sources: a non-empty list"),
    ({"event_types": [], "sources": ["*"]}, "event_types: a non-empty list"),
    ({"event_types": ["a,b"], "sources": ["*"]}, "event_types: a non-empty list"),
    ({"event_types": [7], "sources": ["*"]}, "event_types: a non-empty list"),
    ({"event_types": [True], "sources": ["*"]}, "event_types: a non-empty list"),
    ({"event_types": "ab", "sources": ["*"]}, "event_types: a non-empty list"),     # not chars
    ({"event_types": {"a": 1}, "sources": ["*"]}, "event_types: a non-empty list"),
    ({"event_types": ["*"], "sources": [["a"]]}, "sources: a non-empty list"),  # unhashable
    ({"event_types": [{"a": 1}], "sources": ["*"]}, "event_types: a non-empty list"),
    ({"event_types": ["bad type!"], "sources": ["*"]}, "may only contain"),
])
def test_a_malformed_scope_makes_the_token_invalid(scope, says):
    payload = claims()
    payload["sse"] = scope
    reason = refused(Verifier(hs_rules()), jwt.encode(payload, SECRET, algorithm="HS256"))
    assert reason.startswith("claim 'sse'") and says in reason


def test_tokens_carrying_the_same_scope_read_it_alike():
    verifier = Verifier(hs_rules())
    scope = {"event_types": ["order.*", "user.created"], "sources": ["shop"]}
    first, second = (verifier.verify(jwt.encode({**claims(sub=name), "sse": scope}, SECRET))
                     for name in ("alice", "bob"))
    assert first.scope_types == second.scope_types == ("order.*", "user.created")
    assert first.scope_sources == second.scope_sources == ("shop",)
    assert (first.subject, second.subject) == ("alice", "bob")


@pytest.mark.parametrize("subject", [None, "", 7, "x" * 1025, "\ud800", "al\udfffice"])
def test_a_missing_or_odd_subject_makes_the_token_invalid(subject):
    token = jwt.encode(claims(sub=subject) if subject is not None else
                       {k: v for k, v in claims().items() if k != "sub"}, SECRET)
    assert refused(Verifier(hs_rules()), token) == "claim 'sub' must name the subject"


# --- configuration --------------------------------------------------------------------------

def test_rules_that_cannot_work_are_refused_when_the_verifier_is_built(rsa_key):
    bad = [
        (TokenRules(algorithms=("HS256",), secret=b"short"), "at least 32 bytes"),
        (TokenRules(algorithms=("HS256",)), "at least 32 bytes"),
        (TokenRules(algorithms=("RS256",), secret=SECRET, public_key_pem=pem(rsa_key)),
         "no HS\\* algorithm"),
        (TokenRules(algorithms=("RS256",)), "exactly one of a public key or a JWKS"),
        (TokenRules(algorithms=("RS256",), public_key_pem=pem(rsa_key),
                    jwks=JwksCache(dict, min_refresh_s=1)), "exactly one of"),
        (TokenRules(algorithms=("HS256",), secret=SECRET, public_key_pem=pem(rsa_key)),
         "no RS/PS/ES/EdDSA algorithm"),
        (TokenRules(algorithms=("ES256",), public_key_pem=pem(rsa_key)),
         "does not fit ES256"),
        (TokenRules(algorithms=("HS256",), secret=SECRET, leeway_s=-1), "zero or more"),
    ]
    for rules, says in bad:
        with pytest.raises(ValueError, match=says):
            Verifier(rules)


# --- keys from a JWKS -----------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def jwk(private_key, kid: str, **extra) -> dict:
    algorithm = RSAAlgorithm if isinstance(private_key, rsa.RSAPrivateKey) else ECAlgorithm
    return algorithm.to_jwk(private_key.public_key(), as_dict=True) | {"kid": kid} | extra


def test_an_unknown_kid_refreshes_the_jwks_and_a_rotated_key_is_then_accepted(
        rsa_key, other_rsa_key):
    documents = [{"keys": [jwk(rsa_key, "k1")]}, {"keys": [jwk(other_rsa_key, "k2")]}]
    clock = Clock()
    cache = JwksCache(lambda: documents[min(cache.fetches - 1, 1)], min_refresh_s=60,
                      clock=clock)
    verifier = Verifier(TokenRules(algorithms=("RS256",), jwks=cache))
    old = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    new = jwt.encode(claims(sub="bob"), other_rsa_key, algorithm="RS256", headers={"kid": "k2"})

    assert verifier.verify(old).subject == "alice" and cache.fetches == 1
    clock.now += 1          # within min_refresh_s: a kid not looked for yet fetches at once
    assert verifier.verify(new).subject == "bob" and cache.fetches == 2
    assert refused(verifier, old) == "unknown key id"      # rotated out
    assert cache.fetches == 2                              # and no fetch storm


def test_a_key_the_issuer_withdrew_is_refused_once_the_keys_fetched_are_old(
        rsa_key, other_rsa_key):
    """An issuer withdraws a key that leaked: tokens its thief signs with it must stop being
    accepted. Keys were fetched only for a kid not known, so a known kid was trusted for ever."""
    documents = [{"keys": [jwk(rsa_key, "k1"), jwk(other_rsa_key, "k2")]},
                 {"keys": [jwk(other_rsa_key, "k2")]}]
    clock = Clock()
    cache = JwksCache(lambda: documents[min(cache.fetches - 1, 1)], min_refresh_s=60,
                      clock=clock)
    verifier = Verifier(TokenRules(algorithms=("RS256",), jwks=cache))
    signed = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    assert verifier.verify(signed).subject == "alice" and cache.fetches == 1
    clock.now += 60         # within the keys' age: no fetch for a known kid
    assert verifier.verify(jwt.encode(claims(sub="bob"), rsa_key, algorithm="RS256",
                                      headers={"kid": "k1"})).subject == "bob"
    assert cache.fetches == 1
    clock.now += 3600                   # an hour on: k1 withdrawn at the issuer meanwhile
    forged = jwt.encode(claims(sub="eve"), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    assert refused(verifier, forged) == "unknown key id" and cache.fetches == 2
    assert refused(verifier, signed) == "unknown key id"      # remembered ones: checked again
    kept = jwt.encode(claims(sub="carol"), other_rsa_key, algorithm="RS256",
                      headers={"kid": "k2"})
    assert verifier.verify(kept).subject == "carol" and cache.fetches == 2


def test_keys_fetched_again_unchanged_keep_the_tokens_verified_with_them(rsa_key,
                                                                       other_rsa_key):
    """Keys grown old are fetched again every KEYS_MAX_AGE_S while tokens arrive: when the
    issuer published the same keys (or only added one), the tokens verified with them stay
    remembered; every reconnecting stream's token was verified again after each such fetch."""
    documents = [{"keys": [jwk(rsa_key, "k1")]},
                 {"keys": [jwk(rsa_key, "k1")]},
                 {"keys": [jwk(rsa_key, "k1"), jwk(other_rsa_key, "k2")]}]
    clock = Clock()
    cache = JwksCache(lambda: documents[cache.fetches - 1], min_refresh_s=60, clock=clock)
    verifier = Verifier(TokenRules(algorithms=("RS256",), jwks=cache))
    signed = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    assert verifier.verify(signed).subject == "alice"
    for fetches in (2, 3):
        clock.now += 3600
        verifier.verify(jwt.encode(claims(sub=f"bob{fetches}"), rsa_key, algorithm="RS256",
                                   headers={"kid": "k1"}))         # a new token: keys asked
        assert cache.fetches == fetches
        hits = verifier.verified.hits
        assert verifier.verify(signed).subject == "alice"
        assert verifier.verified.hits == hits + 1       # remembered, not verified again


def test_old_keys_are_kept_while_the_issuer_cannot_be_fetched(rsa_key):
    """A fetch of keys grown old that fails keeps them, and is tried again with the back-off
    of a failed fetch, not on every token."""
    answers = [{"keys": [jwk(rsa_key, "k1")]}]
    clock = Clock()

    def fetch():
        if not answers:
            raise OSError("issuer down")
        return answers.pop()

    cache = JwksCache(fetch, min_refresh_s=60, clock=clock, jitter=lambda: 0.0)
    verifier = Verifier(TokenRules(algorithms=("RS256",), jwks=cache))
    assert verifier.verify(jwt.encode(claims(), rsa_key, algorithm="RS256",
                                      headers={"kid": "k1"})).subject == "alice"
    clock.now += 3600
    for n in range(5):
        token = jwt.encode(claims(sub=f"u{n}"), rsa_key, algorithm="RS256",
                           headers={"kid": "k1"})
        assert verifier.verify(token).subject == f"u{n}"
    assert cache.fetches == 2
    clock.now += 1.0                      # RETRY_FIRST_S later: tried again, still kept
    verifier.verify(jwt.encode(claims(sub="v"), rsa_key, algorithm="RS256",
                               headers={"kid": "k1"}))
    assert cache.fetches == 3


def _a_slow_fetch_under_way(rsa_key):
    """A JWKS fetch started in a thread that answers (key k1) once `release` is set; the cache,
    a verifier on it, a token of k1, the fetch's `started` and `release` events and its
    thread."""
    started, release = threading.Event(), threading.Event()

    def fetch():
        started.set()
        release.wait(10)
        return {"keys": [jwk(rsa_key, "k1")]}

    cache = JwksCache(fetch, min_refresh_s=60, clock=Clock())
    verifier = Verifier(TokenRules(algorithms=("RS256",), jwks=cache))
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    prefetch = threading.Thread(target=cache.refresh)
    prefetch.start()
    return cache, verifier, token, started, release, prefetch


def test_a_token_arriving_while_its_keys_are_fetched_waits_for_them(rsa_key):
    """The start-up fetch (Authenticator.prefetch) or another request's: a token naming a key
    not known yet got 401 'unknown key id' meanwhile (an EventSource then stops for good)."""
    cache, verifier, token, started, release, prefetch = _a_slow_fetch_under_way(rsa_key)
    assert started.wait(10)
    answers = []

    def ask():
        try:
            answers.append(verifier.verify(token).subject)
        except InvalidToken as exc:
            answers.append(exc.reason)

    waiting = threading.Thread(target=ask, daemon=True)
    try:
        waiting.start()
        waiting.join(0.5)           # a refusal comes at once; a wait stays
    finally:
        release.set()
    prefetch.join(10)
    waiting.join(10)
    assert answers == ["alice"] and cache.fetches == 1


def test_a_token_that_waited_out_a_slow_fetch_is_told_to_retry_after_the_fetchs_time(
        rsa_key, monkeypatch):
    """The key server slow at start: a token that waited for the fetch under way, in vain, is
    answered 503 with Retry-After the time such a fetch is given, not 1 s (every client
    coming back each second while the fetch hangs)."""
    from actors.auth import jwks
    monkeypatch.setattr(jwks, "FETCH_WAIT_S", 1.05)      # the wait, shortened for the test
    cache, verifier, token, started, release, prefetch = _a_slow_fetch_under_way(rsa_key)
    try:
        assert started.wait(10)
        with pytest.raises(KeysUnavailable) as caught:
            verifier.verify(token)
    finally:
        release.set()
        prefetch.join(10)
    assert caught.value.retry_after == 2                    # 1.05 s, in whole seconds
    assert verifier.verify(token).subject == "alice" and cache.fetches == 1


def test_unknown_kids_fetch_at_most_three_times_per_interval():
    clock = Clock()
    cache = JwksCache(lambda: {"keys": []}, min_refresh_s=30, clock=clock)
    verifier = Verifier(TokenRules(algorithms=("RS256",), jwks=cache))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for i in range(20):
        token = jwt.encode(claims(), key, algorithm="RS256", headers={"kid": f"k{i}"})
        assert refused(verifier, token) == "unknown key id"
        clock.now += 1
    assert cache.fetches == 3                              # at 1000, 1001 and 1002
    clock.now += 10
    refused(verifier, jwt.encode(claims(), key, algorithm="RS256", headers={"kid": "x"}))
    assert cache.fetches == 4                              # 1030: the one of 1000 is past
    clock.now += 0.5
    refused(verifier, jwt.encode(claims(), key, algorithm="RS256", headers={"kid": "y"}))
    assert cache.fetches == 4


def test_a_failed_fetch_keeps_the_keys_already_known(rsa_key):
    answers = [{"keys": [jwk(rsa_key, "k1")]}]

    def fetch():
        if not answers:
            raise OSError("connection refused")
        return answers.pop()

    clock = Clock()
    cache = JwksCache(fetch, min_refresh_s=5, clock=clock)
    verifier = Verifier(TokenRules(algorithms=("RS256",), jwks=cache))
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    assert verifier.verify(token).subject == "alice"
    clock.now += 5
    stranger = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k9"})
    assert refused(verifier, stranger) == "unknown key id" and cache.fetches == 2
    assert verifier.verify(token).subject == "alice"


def test_a_jwks_token_without_kid_or_with_a_key_of_another_type_is_refused(rsa_key):
    ec_key = ec.generate_private_key(ec.SECP256R1())
    document = {"keys": [jwk(rsa_key, "rsa"), jwk(ec_key, "ec", alg="ES256"),
                         {"kty": "oct", "k": "c2VjcmV0", "kid": "oct"}]}
    cache = JwksCache(lambda: document, min_refresh_s=60, clock=Clock())
    verifier = Verifier(TokenRules(algorithms=("RS256", "ES256"), jwks=cache))
    assert refused(verifier, jwt.encode(claims(), rsa_key, algorithm="RS256")) == (
        "token has no key id")
    es_with_rsa_kid = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "rsa"})
    assert refused(verifier, es_with_rsa_kid) == "key does not fit the algorithm"
    rs_with_ec_kid = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "ec"})
    assert refused(verifier, rs_with_ec_kid) == "key does not fit the algorithm"
    assert verifier.verify(
        jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "ec"})).subject


def test_a_jwks_oct_key_is_never_used_as_an_hmac_secret(rsa_key):
    document = {"keys": [{"kty": "oct", "k": base64.urlsafe_b64encode(SECRET).decode(),
                          "kid": "oct"}, jwk(rsa_key, "rsa")]}
    cache = JwksCache(lambda: document, min_refresh_s=60, clock=Clock())
    verifier = Verifier(TokenRules(algorithms=("RS256",), jwks=cache))
    forged = jwt.encode(claims(), SECRET, algorithm="RS256".replace("RS", "HS"),
                        headers={"kid": "oct"})
    assert refused(verifier, forged) == "algorithm not accepted"
    assert refused(verifier, jwt.encode(claims(), rsa_key, algorithm="RS256",
                                        headers={"kid": "oct"})) == "unknown key id"


def test_a_jwks_key_published_for_encryption_does_not_verify_tokens(rsa_key, other_rsa_key):
    """RFC 7517 4.2: a key of "use": "enc" is for encrypting to the issuer, not for signing: a
    token signed with it (a key some other party may hold) must be refused."""
    document = {"keys": [jwk(rsa_key, "enc", use="enc"), jwk(other_rsa_key, "sig", use="sig")]}
    cache = JwksCache(lambda: document, min_refresh_s=60, clock=Clock())
    verifier = Verifier(TokenRules(algorithms=("RS256",), jwks=cache))
    signed = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "enc"})
    assert refused(verifier, signed) == "unknown key id"
    assert verifier.verify(jwt.encode(claims(), other_rsa_key, algorithm="RS256",
                                      headers={"kid": "sig"})).subject == "alice"


def test_a_jwks_key_declared_for_one_algorithm_refuses_another_of_the_same_family(rsa_key):
    document = {"keys": [jwk(rsa_key, "k1", alg="RS256")]}
    cache = JwksCache(lambda: document, min_refresh_s=60, clock=Clock())
    verifier = Verifier(TokenRules(algorithms=("RS256", "PS256"), jwks=cache))
    assert verifier.verify(jwt.encode(claims(), rsa_key, algorithm="RS256",
                                      headers={"kid": "k1"})).subject == "alice"
    ps256 = jwt.encode(claims(), rsa_key, algorithm="PS256", headers={"kid": "k1"})
    assert refused(verifier, ps256) == "key does not fit the algorithm"


def test_the_header_of_an_issuers_tokens_is_read_once_and_shared_read_only():
    from actors.auth import tokens
    tokens._read_header.cache_clear()
    verifier = Verifier(hs_rules())
    for subject in ("al", "bo", "cy"):
        assert verifier.verify(jwt.encode(claims(sub=subject), SECRET)).subject == subject
    info = tokens._read_header.cache_info()
    assert (info.misses, info.hits) == (1, 2)
    header = tokens._header(jwt.encode(claims(), SECRET))
    with pytest.raises(TypeError):
        header["alg"] = "none"                       # type: ignore[index]
    for _ in range(2):                                # a refusal is never remembered
        assert refused(verifier, f"{b64({'alg': 'HS256', 'kid': 7})}.{b64(claims())}.c2ln") == (
            "malformed token")


# --- a key server that fails ----------------------------------------------------------------

def failing_then(document, failures: int):
    """A fetch that raises `failures` times, then answers `document`."""
    def fetch():
        fetch.calls += 1
        if fetch.calls <= failures:
            raise OSError("connection refused")
        return document
    fetch.calls = 0
    return fetch


def test_a_failed_fetch_at_start_is_tried_again_within_seconds_not_after_the_interval(rsa_key):
    """The key server down or slow at gateway start: every token was refused for the whole
    AUTH_JWKS_REFRESH_SECONDS (401, and an EventSource gives up for good on a 401)."""
    clock = Clock()
    cache = JwksCache(failing_then({"keys": [jwk(rsa_key, "k1")]}, 1), min_refresh_s=60,
                      clock=clock)
    cache.refresh()                                     # the start-up fetch fails
    verifier = Verifier(TokenRules(algorithms=("RS256",), jwks=cache))
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(KeysUnavailable) as caught:      # not "your token is bad"
        verifier.verify(token)
    assert 1 <= caught.value.retry_after <= 2 and cache.fetches == 1
    clock.now += caught.value.retry_after
    assert verifier.verify(token).subject == "alice" and cache.fetches == 2


def test_a_client_back_after_retry_after_finds_the_keys_fetched_again(rsa_key):
    """Retry-After (503) is the time until the next fetch may start, rounded up: a client told
    1 s when that fetch was 1.5 s away came back to another 503 for nothing."""
    clock = Clock()
    cache = JwksCache(failing_then({"keys": [jwk(rsa_key, "k1")]}, 2), min_refresh_s=60,
                      clock=clock, jitter=lambda: 0.0)
    cache.refresh()
    cache.refresh()                     # two failed in a row: the next one 2 s later
    clock.now += 0.5
    verifier = Verifier(TokenRules(algorithms=("RS256",), jwks=cache))
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(KeysUnavailable) as caught:
        verifier.verify(token)
    assert caught.value.retry_after == 2 and cache.fetches == 2
    clock.now += caught.value.retry_after
    assert verifier.verify(token).subject == "alice" and cache.fetches == 3


def test_failed_fetches_back_off_and_unknown_kids_cannot_make_them_hammer(rsa_key):
    clock = Clock()
    fetch = failing_then({}, 10**6)
    starts = []
    cache = JwksCache(lambda: starts.append(clock.now) or fetch(), min_refresh_s=60,
                      clock=clock)
    verifier = Verifier(TokenRules(algorithms=("RS256",), jwks=cache))
    for i in range(6000):                               # a new kid every 0.1 s for 10 minutes
        token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": f"k{i}"})
        with pytest.raises(KeysUnavailable):
            verifier.verify(token)
        clock.now += 0.1
    gaps = [b - a for a, b in pairwise(starts)]
    assert starts[0] == 1000.0 and 0.5 <= gaps[0] <= 1.1       # soon after the first failure
    assert all(b >= a * 0.45 for a, b in pairwise(gaps))  # growing (with jitter)
    assert max(gaps) <= 60.1 and min(gaps[-3:]) >= 29.9       # up to the interval, not past
    assert len(starts) <= 30                            # 10 minutes: not 6,000 fetches


# --- keys rotated at the issuer -------------------------------------------------------------

def test_a_key_used_as_soon_as_it_is_published_is_fetched_at_once(rsa_key, other_rsa_key):
    """OIDC lets an issuer sign with a new key the moment it publishes it: a fetch just before
    (the start-up one, a stray kid's) left such tokens refused for AUTH_JWKS_REFRESH_SECONDS."""
    published = [jwk(rsa_key, "k1")]
    clock = Clock()
    cache = JwksCache(lambda: {"keys": list(published)}, min_refresh_s=60, clock=clock)
    verifier = Verifier(TokenRules(algorithms=("RS256",), jwks=cache))
    cache.refresh()                                        # the start-up fetch
    clock.now += 1
    published.append(jwk(other_rsa_key, "k2"))
    new = jwt.encode(claims(sub="bob"), other_rsa_key, algorithm="RS256", headers={"kid": "k2"})
    assert verifier.verify(new).subject == "bob" and cache.fetches == 2


def test_a_stale_or_retired_kid_does_not_spend_the_fetches_a_rotation_needs(rsa_key,
                                                                            other_rsa_key):
    published = {"k1": jwk(rsa_key, "k1")}
    clock = Clock()
    cache = JwksCache(lambda: {"keys": list(published.values())}, min_refresh_s=60,
                      clock=clock)
    verifier = Verifier(TokenRules(algorithms=("RS256",), jwks=cache))
    cache.refresh()
    clock.now += 60                                        # the start-up fetch is long past
    stale = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "from-staging"})
    for _ in range(10):                                    # one client retrying, every second
        clock.now += 1
        assert refused(verifier, stale) == "unknown key id"
    assert cache.fetches == 2                              # looked for once
    published["k2"] = jwk(other_rsa_key, "k2")
    del published["k1"]
    new = jwt.encode(claims(), other_rsa_key, algorithm="RS256", headers={"kid": "k2"})
    assert verifier.verify(new).subject == "alice" and cache.fetches == 3
    old = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    for _ in range(5):
        clock.now += 1
        assert refused(verifier, old) == "unknown key id"  # withdrawn by the last fetch
        assert refused(verifier, stale) == "unknown key id"    # not found by an earlier one
    assert cache.fetches == 3
    clock.now += 60
    assert refused(verifier, stale) == "unknown key id" and cache.fetches == 4


def test_keys_of_different_types_may_share_a_kid(rsa_key):
    """RFC 7517 4.5: keys with the same kid but different kty, as equivalent alternatives. The
    last one read replaced the others: tokens of the others were refused."""
    ec_key = ec.generate_private_key(ec.SECP256R1())
    for document in ({"keys": [jwk(rsa_key, "k1"), jwk(ec_key, "k1")]},
                     {"keys": [jwk(ec_key, "k1"), jwk(rsa_key, "k1")]}):
        cache = JwksCache(lambda document=document: document, min_refresh_s=60, clock=Clock())
        verifier = Verifier(TokenRules(algorithms=("RS256", "ES256"), jwks=cache))
        for key, alg in ((rsa_key, "RS256"), (ec_key, "ES256")):
            token = jwt.encode(claims(sub=alg), key, algorithm=alg, headers={"kid": "k1"})
            assert verifier.verify(token).subject == alg
        assert cache.fetches == 1


@pytest.mark.parametrize("odd", [{"alg": ["RS256"]}, {"alg": "none"}, {"alg": 256},
                                 {"kty": ["RSA"]}, {"n": 5}])
def test_a_jwks_entry_pyjwt_cannot_read_is_skipped_and_the_others_serve(rsa_key, odd):
    """One broken entry (a list where text belongs, alg "none") raised past the key set's
    reading: every token was a 500 and every one fetched the key set again."""
    document = {"keys": [jwk(rsa_key, "odd") | odd, jwk(rsa_key, "k1")]}
    cache = JwksCache(lambda: document, min_refresh_s=60, clock=Clock())
    verifier = Verifier(TokenRules(algorithms=("RS256",), jwks=cache))
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    assert [verifier.verify(token).subject for _ in range(5)] == ["alice"] * 5
    assert cache.fetches == 1
    odd_kid = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "odd"})
    assert refused(verifier, odd_kid) == "unknown key id"


def test_a_key_set_with_no_usable_key_is_a_warning_naming_why_once(rsa_key, caplog):
    """A JWKS whose keys had no kid, or were published for encryption: every token was a 401
    'unknown key id' at INFO, and nothing said why or that the key set was at fault (a log
    audit)."""
    clock = Clock()
    no_kid = {k: v for k, v in jwk(rsa_key, "x").items() if k != "kid"}
    document = {"keys": [no_kid, jwk(rsa_key, "enc", use="enc")]}
    cache = JwksCache(lambda: document, min_refresh_s=1, clock=clock)
    verifier = Verifier(TokenRules(algorithms=("RS256",), jwks=cache))
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "enc"})
    with caplog.at_level("INFO", logger="actors.auth.jwks"):
        for second in range(3):
            clock.now = 1000.0 + second * 2.0
            assert refused(verifier, token) == "unknown key id"
    assert cache.fetches >= 2
    (line,) = [r for r in caplog.records if "JWKS" in r.getMessage()]
    assert line.levelname == "WARNING", line
    message = line.getMessage()
    assert "no key this gateway can use" in message
    assert "every token checked against it is refused" in message
    assert "entry 1: no kid" in message and "entry 2 (kid 'enc'): use 'enc'" in message, message


def test_a_key_set_is_said_when_it_changes(rsa_key, caplog):
    clock = Clock()
    documents = [{"keys": [jwk(rsa_key, "k1")]}, {"keys": [jwk(rsa_key, "k2", alg="RS256")]}]
    cache = JwksCache(lambda: documents[min(cache.fetches - 1, 1)], min_refresh_s=1,
                      clock=clock)
    with caplog.at_level("INFO", logger="actors.auth.jwks"):
        cache.refresh()
        clock.now = 1005.0
        cache.refresh()
        clock.now = 1010.0
        cache.refresh()
    said = [r.getMessage() for r in caplog.records if "JWKS" in r.getMessage()]
    assert said == ["JWKS: 1 key(s) in use: kid 'k1' (alg not declared)",
                    "JWKS: 1 key(s) in use: kid 'k2' (RS256)"], said


def test_a_key_set_that_cannot_be_read_at_all_is_a_failed_fetch(rsa_key, monkeypatch):
    from actors.auth import jwks
    clock = Clock()
    cache = JwksCache(lambda: {"keys": [jwk(rsa_key, "k1")]}, min_refresh_s=60, clock=clock)

    def unreadable(document):
        raise RuntimeError("a reading this code did not foresee")
    monkeypatch.setattr(jwks, "_keys_by_kid", unreadable)
    verifier = Verifier(TokenRules(algorithms=("RS256",), jwks=cache))
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    for _ in range(10):
        with pytest.raises(KeysUnavailable):
            verifier.verify(token)
    assert cache.fetches == 1           # backing off, as after a fetch that failed


# --- keys too short for their algorithm --------------------------------------------------------

@pytest.mark.parametrize("alg, needed", [("HS384", 48), ("HS512", 64)])
def test_an_hs_secret_shorter_than_its_hash_is_refused_when_the_verifier_is_built(alg, needed):
    """PyJWT refuses such a secret for every token (RFC 7518 3.2): a service that started
    with it answered every good token 401."""
    with pytest.raises(ValueError, match=f"{alg} needs a secret of at least {needed} bytes"):
        Verifier(TokenRules(algorithms=(alg,), secret=b"k" * (needed - 1)))
    verifier = Verifier(TokenRules(algorithms=(alg,), secret=b"k" * needed))
    good = jwt.encode(claims(), b"k" * needed, algorithm=alg)
    assert verifier.verify(good).subject == "alice"


def test_an_rsa_public_key_shorter_than_2048_bits_is_refused_when_the_verifier_is_built():
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="1024 bits"):
        Verifier(TokenRules(algorithms=("RS256",), public_key_pem=pem(short)))


@pytest.mark.filterwarnings("ignore:The RSA key is 1024 bits long")
def test_a_jwks_key_too_short_refuses_its_tokens_saying_so():
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cache = JwksCache(lambda: {"keys": [jwk(short, "k1")]}, min_refresh_s=60, clock=Clock())
    verifier = Verifier(TokenRules(algorithms=("RS256",), jwks=cache))
    token = jwt.encode(claims(), short, algorithm="RS256", headers={"kid": "k1"})
    assert refused(verifier, token) == "key too short for its algorithm"


@pytest.mark.parametrize("subject", [" ", "\t", "\u00a0", " alice "])
def test_a_subject_is_taken_exactly_as_the_token_names_it(subject):
    """The management API's DisconnectSubject takes it the same way (rpc/servicer.py)."""
    verifier = Verifier(hs_rules())
    assert verifier.verify(jwt.encode(claims(sub=subject), SECRET)).subject == subject


def test_a_subject_is_as_long_as_an_events_owner_may_be():
    from actors.auth.subjects import MAX_SUBJECT_LENGTH
    verifier = Verifier(hs_rules())
    longest = "s" * MAX_SUBJECT_LENGTH
    assert verifier.verify(jwt.encode(claims(sub=longest), SECRET)).subject == longest
    assert "subject" in refused(verifier, jwt.encode(claims(sub=longest + "s"), SECRET))


def test_a_remembered_token_signed_with_a_withdrawn_key_is_refused_once_the_keys_are_old():
    """A token remembered as verified was answered from memory for ever, so keys grown old
    were never fetched again while only remembered tokens came: a leaked key the issuer
    withdrew kept opening streams for the tokens already seen (an auth audit)."""
    leaked = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    published = {"keys": [RSAAlgorithm.to_jwk(leaked.public_key(), as_dict=True)
                          | {"kid": "k1", "use": "sig"}]}
    clock = Clock()
    cache = JwksCache(lambda: published, min_refresh_s=60, clock=clock)
    verifier = Verifier(TokenRules(algorithms=("RS256",), jwks=cache))
    # the thief of k1 signs a long-lived token and streams with it
    stolen = jwt.encode({"sub": "eve", "sse": {"event_types": ["*"], "sources": ["*"]}, "exp": int(time.time()) + 86400},
                        leaked, algorithm="RS256", headers={"kid": "k1"})
    assert verifier.verify(stolen).subject == "eve" and cache.fetches == 1

    published = {"keys": []}            # the issuer withdraws the leaked key
    clock.now += 3600                   # an hour on: the keys are far older than 5 minutes
    try:
        identity = verifier.verify(stolen)      # the thief's reconnect
    except InvalidToken as refused:
        assert refused.reason == "unknown key id"
    else:
        raise AssertionError(f"token signed with a withdrawn key still accepted as "
                             f"{identity.subject!r} an hour later (JWKS fetches: "
                             f"{cache.fetches}: the old keys were never fetched again)")


def test_every_key_published_under_a_kid_is_tried():
    """An issuer rotating a key in place publishes the old and the new one under one kid for a
    while: only the first was tried, so tokens of the second were 401 'bad signature'."""
    old, new = (rsa.generate_private_key(public_exponent=65537, key_size=2048)
                for _ in range(2))
    document = {"keys": [RSAAlgorithm.to_jwk(k.public_key(), as_dict=True) | {"kid": "k1"}
                         for k in (old, new)]}
    verifier = Verifier(TokenRules(algorithms=("RS256",),
                                   jwks=JwksCache(lambda: document, min_refresh_s=60)))
    for who, key in (("old", old), ("new", new)):
        token = jwt.encode({"sub": who, "exp": int(time.time()) + 300, "sse": {"event_types": ["*"], "sources": ["*"]}}, key,
                           algorithm="RS256", headers={"kid": "k1"})
        assert verifier.verify(token).subject == who


def test_an_expired_token_of_a_key_rotated_in_place_is_refused_as_expired(rsa_key,
                                                                          other_rsa_key):
    """Old and new key under one kid: an expired token signed with the old one was refused
    "bad signature" (the new key tried after it), so its client threw away a token it only
    needed to renew."""
    document = {"keys": [jwk(rsa_key, "k1"), jwk(other_rsa_key, "k1")]}
    verifier = Verifier(TokenRules(algorithms=("RS256",),
                                   jwks=JwksCache(lambda: document, min_refresh_s=60)))
    for key in (rsa_key, other_rsa_key):
        expired = jwt.encode(claims(exp=int(time.time()) - 60), key, algorithm="RS256",
                             headers={"kid": "k1"})
        assert refused(verifier, expired) == "token expired"


PAYLOADS = [b'{"sub":"alice","exp":1}', b'{"a":1} ', b' {"a":1}', b'{"a":1}\n', b'[1]', b'"x"',
            b'{"a":1}{"b":2}', b'{"a":', b'{"a":NaN,"b":Infinity}', b'{"a":1,"a":2}',
            b'{"\xed\xa0\x80":1}', b'{"caf\xc3\xa9":1}', b'{"a":"\xff"}', b'',
            '{"a":1}'.encode("utf-16"), '{"a":1}'.encode("utf-16-le"), b'\xef\xbb\xbf{"a":1}',
            b'{"a":' * 5000 + b'1' + b'}' * 5000, b'{"a":[' + b'[' * 100 + b']' * 100 + b']}']


def _decoded(decoder, payload: bytes):
    try:
        return "ok", decoder._decode_payload({"payload": payload})
    except jwt.DecodeError as exc:
        return "refused", str(exc)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_are_read_as_pyjwt_reads_them(payload):
    from actors.auth.tokens import _PyJWT
    ours, theirs = _decoded(_PyJWT(), payload), _decoded(jwt.PyJWT(), payload)
    assert ours == theirs
