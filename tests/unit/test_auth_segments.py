"""The fast segment check gives PyJWT's own answers, and tampered tokens stay refused."""
import base64
import logging
import random
import time

import jwt
import pytest
from jwt.api_jws import PyJWS

from actors.auth import segments
from actors.auth.identity import InvalidToken
from actors.auth.tokens import TokenRules, Verifier

SECRET = b"s" * 32
LIBRARY = PyJWS._decode_base64url_segment


def corpus(count=3000, seed=7):
    """Valid segments of every length mod 4, with and without padding, and each spoiled by
    one character of every kind (outside the alphabet, '=', whitespace, high bytes)."""
    rng = random.Random(seed)
    spoilers = [b"!", b"=", b" ", b"\n", b"+", b"/", b".", b"\x00", b"\xff", b"\xc3\xa9"]
    found = list(segments.SAMPLES)
    for _ in range(count):
        raw = rng.randbytes(rng.randrange(0, 40))
        encoded = base64.urlsafe_b64encode(raw)
        found += [encoded, encoded.rstrip(b"=")]
        if encoded:
            at = rng.randrange(len(encoded))
            found.append(encoded[:at] + rng.choice(spoilers) + encoded[at + 1:])
            found.append(encoded.rstrip(b"=") + b"=" * rng.randrange(1, 5))
            found.append(encoded[:-1] + bytes([rng.randrange(256)]))
    for length in range(2, 8):          # every last character, canonical or not
        stripped = base64.urlsafe_b64encode(rng.randbytes(length)).rstrip(b"=")
        found += [stripped[:-1] + bytes([c]) for c in segments.ALPHABET]
    return found


def test_decode_segment_answers_as_pyjwt_does_for_every_segment():
    checked = corpus()
    answers = [segments._outcome(segments.decode_segment, s) for s in checked]
    assert answers == [segments._outcome(LIBRARY, s) for s in checked]
    kinds = {kind for kind, _ in answers}
    assert kinds == {"ok", "refused"}           # the corpus holds both


def test_install_puts_it_on_one_jws_only():
    decoder = jwt.PyJWT()
    assert segments.install(decoder._jws)
    assert decoder._jws._decode_base64url_segment is segments.decode_segment
    assert PyJWS._decode_base64url_segment is LIBRARY
    assert jwt.api_jws._jws_global_obj._decode_base64url_segment is LIBRARY


def test_a_pyjwt_that_answers_otherwise_keeps_its_own_check(caplog):
    class Stricter:
        @staticmethod
        def _decode_base64url_segment(segment, name):
            if len(segment) < 3:
                raise jwt.DecodeError("too short")
            return LIBRARY(segment, name)

    jws = Stricter()
    with caplog.at_level(logging.INFO, logger="actors.auth.segments"):
        assert not segments.install(jws)
    assert jws._decode_base64url_segment is not segments.decode_segment
    assert "its check stays" in caplog.text
    assert not segments.install(object())       # no such step at all


def test_the_verifier_uses_it_and_still_refuses_tampered_tokens():
    verifier = Verifier(TokenRules(algorithms=("HS256",), secret=SECRET))
    assert verifier._jwt._jws._decode_base64url_segment is segments.decode_segment
    now = int(time.time())
    token = jwt.encode({"sub": "alice", "exp": now + 60,
                        "sse": {"event_types": ["*"], "sources": ["*"]}}, SECRET)
    assert verifier.verify(token).subject == "alice"
    head, body, signature = token.split(".")
    for spoiled in (f"{head}.{body}.{signature}!!!!", f"{head}.{body}!.{signature}",
                    f"{head}.{body}.{signature}===", f"{head}.{body}.{signature[:-1]}\u00e9"):
        with pytest.raises(InvalidToken) as caught:
            verifier.verify(spoiled)
        assert caught.value.reason in ("malformed token", "bad signature")
