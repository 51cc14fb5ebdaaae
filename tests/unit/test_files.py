"""actors/files.py: the shared files' room, where the filesystem has fallocate and where not."""
import errno
import os

import pytest

from actors import files, shared_limits as sl
from actors.auth.shared_nonces import SharedNonces, create as create_nonces
from actors.settings import Settings
from web import metrics_files


@pytest.fixture
def no_fallocate(monkeypatch):
    """A filesystem without fallocate (musl does not emulate it): EOPNOTSUPP."""
    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")
    monkeypatch.setattr(os, "posix_fallocate", unsupported)


def test_without_fallocate_the_limits_file_is_made_and_attached(tmp_path, no_fallocate):
    path = str(tmp_path / sl.LIMITS_FILE)
    settings = Settings.defaults(rate_limit_enabled=False)
    sl.create(path, settings)                       # it raised: the master refused to start
    shared = sl.SharedLimits.attach(path, settings)
    try:
        assert os.path.getsize(path) > 0
    finally:
        shared.close()


def test_without_fallocate_the_ticket_nonce_file_is_made_and_used(tmp_path, no_fallocate):
    path = str(tmp_path / "tickets")
    create_nonces(path)
    nonces = SharedNonces(path)
    try:
        assert nonces.claim("n1", expires=100.0, now=1.0)
        assert not nonces.claim("n1", expires=100.0, now=2.0)
    finally:
        nonces.close()


def test_without_fallocate_a_worker_still_gets_its_metrics_files(tmp_path, no_fallocate):
    assert metrics_files.reserve_own(str(tmp_path), 4242) is None
    assert sorted(os.listdir(tmp_path)) == ["counter_4242.db", "histogram_4242.db"]


def test_allocate_gives_the_file_its_size_and_never_shrinks_it(tmp_path, no_fallocate):
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        files.allocate(fd, 4096)
        assert os.fstat(fd).st_size == 4096
        files.allocate(fd, 100)
        assert os.fstat(fd).st_size == 4096
    finally:
        os.close(fd)


def test_no_room_is_raised_whatever_the_filesystem(tmp_path, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "posix_fallocate", full)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError) as raised:
            files.allocate(fd, 4096)
        assert raised.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
