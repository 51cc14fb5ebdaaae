import hashlib
import hmac
import os

import pytest

from actors.auth.mac import PreparedMAC


@pytest.mark.parametrize("digest", [hashlib.sha256, hashlib.sha384, hashlib.sha512])
@pytest.mark.parametrize("key_size", [0, 1, 32, 63, 64, 65, 128, 129, 300])
def test_it_gives_what_hmac_gives_for_any_key(digest, key_size):
    key = os.urandom(key_size)
    mac = PreparedMAC(key, digest)
    for size in (0, 1, 55, 64, 200, 5000):
        message = os.urandom(size)
        assert mac.digest(message) == hmac.digest(key, message, digest)


def test_a_prefix_is_part_of_every_message():
    key = os.urandom(32)
    mac = PreparedMAC(key, prefix=b"context.")
    assert mac.digest(b"body") == hmac.digest(key, b"context.body", "sha256")
    assert mac.digest(b"body") != PreparedMAC(key).digest(b"body")


def test_one_mac_does_not_change_the_next():
    mac = PreparedMAC(b"k" * 32)
    first = mac.digest(b"one")
    mac.digest(b"two")
    assert mac.digest(b"one") == first
