"""DirWatch: a worker says once, with what to do, that the instance directory is gone; and
web/instance_dir.remake makes it again only as a private directory."""
import logging
import os

import pytest

from service.dir_watch import CHECK_SECONDS, DirWatch
from web import instance_dir


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_a_gone_directory_is_said_once_with_the_signal_to_send(tmp_path, caplog, monkeypatch):
    clock = Clock()
    watch = DirWatch(str(tmp_path / "gone"), 4321, clock=clock)
    caplog.set_level(logging.WARNING, "service.dir_watch")
    assert not watch.check()                        # not looked at before CHECK_SECONDS
    clock.now = CHECK_SECONDS
    assert watch.check()
    clock.now = 2 * CHECK_SECONDS
    assert not watch.check()
    [said] = [r.getMessage() for r in caplog.records]
    assert "was removed under the running instance" in said and "kill -HUP 4321" in said
    monkeypatch.setattr(instance_dir, "missing", lambda path: None)     # made again
    clock.now = 3 * CHECK_SECONDS
    assert not watch.check()
    monkeypatch.undo()                                                  # and gone again
    clock.now = 4 * CHECK_SECONDS
    assert watch.check() and len(caplog.records) == 2


def _settings():
    from actors.settings import Settings
    return Settings.defaults()


@pytest.mark.parametrize("found", ["open to others", "a link"])
def test_a_directory_another_hand_put_at_the_path_is_not_used(tmp_path, found):
    """The review of the healing: `makedirs(exist_ok=True)` took a 0777 directory (or a link
    to one) that a local user made at the removed path in the meantime, and wrote there."""
    path = tmp_path / "kafka-sse-1-x"
    if found == "a link":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        path.symlink_to(elsewhere)
    else:
        path.mkdir()
        os.chmod(path, 0o777)
    with pytest.raises(PermissionError, match="not used"):
        instance_dir.remake(str(path), _settings())
    assert not (tmp_path / "elsewhere" / "limits").exists() and not (path / "limits").exists()


def test_a_removed_directory_is_made_again_private_and_whole(tmp_path):
    path = tmp_path / "kafka-sse-1-y"
    assert instance_dir.missing(str(path)) == str(path)
    instance_dir.remake(str(path), _settings())
    try:
        assert instance_dir.missing(str(path)) is None
        assert oct(path.stat().st_mode & 0o777) == "0o700"
    finally:
        instance_dir.remove_instance_dir(str(path))
