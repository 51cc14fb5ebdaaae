"""Tokens verified once are not verified again: until they expire, the keys change, or the
cache is full; and a refused token is never remembered."""
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from actors.auth.identity import Identity, InvalidToken
from actors.auth.jwks import JwksCache
from actors.auth.tokens import TokenRules, Verifier
from actors.auth.verified import Expired, VerifiedTokens

SECRET = b"s" * 32
SCOPE = {"event_types": ["*"], "sources": ["*"]}


def token(subject="alice", lifetime=300, key=SECRET, **header):
    now = int(time.time())
    return jwt.encode({"sub": subject, "sse": SCOPE, "exp": now + lifetime}, key,
                      algorithm=header.pop("alg", "HS256"), headers=header or None)


def counting(verifier: Verifier) -> list:
    calls: list = []
    real = verifier._jwt.decode_complete
    verifier._jwt.decode_complete = lambda *a, **k: calls.append(1) or real(*a, **k)
    return calls


def test_a_token_seen_before_is_not_verified_again():
    verifier = Verifier(TokenRules(algorithms=("HS256",), secret=SECRET))
    calls = counting(verifier)
    first, other = token("alice"), token("bob")
    assert verifier.verify(first).subject == "alice"
    assert verifier.verify(first).subject == "alice"
    assert verifier.verify(other).subject == "bob"
    assert len(calls) == 2 and verifier.verified.hits == 1


def test_a_refused_token_is_checked_in_full_every_time():
    verifier = Verifier(TokenRules(algorithms=("HS256",), secret=SECRET))
    calls = counting(verifier)
    forged = token(key=b"x" * 32)
    for _ in range(2):
        with pytest.raises(InvalidToken, match="bad signature"):
            verifier.verify(forged)
    assert len(calls) == 2 and len(verifier.verified) == 0


def test_a_remembered_token_expires_as_pyjwt_would_decide():
    now = [1000.0]
    cache = VerifiedTokens(leeway_s=5, clock=lambda: now[0])
    alice = Identity("alice", ("*",), ("*",), 1010.0)
    cache.put("t", alice, 0)
    now[0] = 1014.9
    assert cache.get("t", 0) is alice            # exp 1010 within the 5 s leeway
    now[0] = 1015.0
    with pytest.raises(Expired):
        cache.get("t", 0)
    assert cache.get("t", 0) is None and len(cache) == 0


def test_a_token_differing_from_a_verified_one_only_in_case_is_verified_in_full():
    """A token's signature is base64url, where case matters: one whose signature has its
    letters in the other case is a forgery, refused, not answered from the cache of tokens
    verified before."""
    verifier = Verifier(TokenRules(algorithms=("HS256",), secret=SECRET))
    alice = token()
    assert verifier.verify(alice).subject == "alice"
    header, payload, signature = alice.split(".")
    for forged in (signature.swapcase(), signature.lower(), signature.upper()):
        if forged != signature:
            with pytest.raises(InvalidToken):
                verifier.verify(f"{header}.{payload}.{forged}")
    assert verifier.verify(alice).subject == "alice"


def test_an_expired_remembered_token_is_refused_by_the_verifier():
    verifier = Verifier(TokenRules(algorithms=("HS256",), secret=SECRET))
    alice = token(lifetime=60)
    verifier.verify(alice)
    verifier.verified.clock = lambda: time.time() + 61
    with pytest.raises(InvalidToken, match="token expired"):
        verifier.verify(alice)


def test_the_oldest_entry_goes_first_when_full():
    cache = VerifiedTokens(capacity=2)
    identities = {name: Identity(name, ("*",), ("*",), time.time() + 60) for name in "abc"}
    for name, identity in identities.items():
        cache.put(name, identity, 0)
    assert len(cache) == 2
    assert cache.get("a", 0) is None
    assert cache.get("b", 0) is identities["b"] and cache.get("c", 0) is identities["c"]


def test_entries_are_kept_under_a_digest_never_the_token():
    cache = VerifiedTokens()
    secret_token = token()
    cache.put(secret_token, Identity("alice", ("*",), ("*",), time.time() + 60), 0)
    (key,) = cache._entries
    assert isinstance(key, bytes) and len(key) == 32
    assert secret_token.encode() not in key and secret_token not in repr(cache._entries)


def test_a_jwks_refresh_makes_every_remembered_token_checked_again():
    old, new = (rsa.generate_private_key(public_exponent=65537, key_size=2048)
                for _ in range(2))

    def jwk(private_key, kid):
        return {**RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True), "kid": kid,
                "alg": "RS256", "use": "sig"}

    documents = [{"keys": [jwk(old, "old")]}]
    now = [0.0]
    jwks = JwksCache(lambda: documents[-1], min_refresh_s=10, clock=lambda: now[0])
    verifier = Verifier(TokenRules(algorithms=("RS256",), jwks=jwks))
    signed_by_old = token(key=old, alg="RS256", kid="old")
    assert verifier.verify(signed_by_old).subject == "alice"
    assert verifier.verify(signed_by_old).subject == "alice"
    assert verifier.verified.hits == 1
    documents.append({"keys": [jwk(new, "new")]})      # the old key is withdrawn
    now[0] = 11.0
    assert verifier.verify(token(key=new, alg="RS256", kid="new", subject="bob")).subject == "bob"
    with pytest.raises(InvalidToken, match="unknown key id"):
        verifier.verify(signed_by_old)
