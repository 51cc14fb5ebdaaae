"""web/worker.py's BurstServer when accept() fails for want of descriptors (ulimit -n reached):
one warning and one line when it accepts again, not gevent's traceback for each try."""
import errno
import time
import logging
import gevent.socket

import gevent
from gevent.server import StreamServer

from actors.logs import LogBudget
from tests.unit.test_worker_stop import served_server  # noqa: F401 - the fixture
from web import worker


def _served(address):
    client = gevent.socket.create_connection(address)
    try:
        client.settimeout(5)
        assert client.recv(12) == b"HTTP/1.1 200"
    finally:
        client.close()


def _accept_failing(monkeypatch, failures: list) -> None:
    """The listener's accept raises each of `failures` (the last first), then accepts."""
    accept = StreamServer.do_read

    def do_read(self):
        if failures:
            raise failures.pop()
        return accept(self)

    monkeypatch.setattr(StreamServer, "do_read", do_read)


def test_out_of_descriptors_is_one_warning_then_one_line_when_accepting_again(
        served_server, monkeypatch, caplog):   # noqa: F811 - the fixture
    """gevent's accept loop printed a six-line traceback to stderr ('BurstServer at 0x...
    failed with OSError'), not through logging (no level, not JSON), for each try while the
    limit held, and nothing when the worker accepted again."""
    server, address, names = served_server
    monkeypatch.setattr(worker.BurstServer, "starved_log", LogBudget(1, 60.0))
    failures = [OSError(errno.EMFILE, "Too many open files")] * 6
    _accept_failing(monkeypatch, failures)
    printed = []
    hub = gevent.get_hub()
    monkeypatch.setattr(hub, "handle_error", lambda *args: printed.append(args))
    caplog.set_level(logging.INFO, logger="web.worker")
    _served(address)                                    # once a descriptor is free
    failures.extend([OSError(errno.EMFILE, "Too many open files")] * 3)
    _served(address)        # at the limit it comes and goes: no line more within the minute
    assert not failures and not printed, printed
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "web.worker"]
    assert [level for level, _ in lines] == ["WARNING", "WARNING"], lines
    warning, recovered = lines[0][1], lines[1][1]
    assert "Too many open files" in warning and "ulimit -n" in warning, warning
    assert "listen queue" in warning, warning                 # what it means for clients
    assert f"{address[0]}:{address[1]}" in warning and "again" in recovered, recovered


def test_a_greenlet_that_fails_is_one_log_record_not_raw_stderr(monkeypatch, caplog, capsys):
    """gevent's hub printed a failed greenlet's traceback straight to stderr ('<Greenlet ...>
    failed with ZeroDivisionError'): under LOG_FORMAT=json, lines that are not JSON, though
    the README promises that every line is (e5a2bc8's second SIGTERM, a bug anywhere)."""
    from gevent.hub import Hub
    monkeypatch.setattr(Hub, "print_exception", Hub.print_exception)   # restored after
    worker.log_hub_errors()
    with caplog.at_level(logging.ERROR, logger="gevent.hub"):
        gevent.spawn(lambda: 1 / 0).join()
    assert "Traceback" not in capsys.readouterr().err
    [record] = [r for r in caplog.records if r.name == "gevent.hub"]
    assert record.levelname == "ERROR" and "failed with ZeroDivisionError" in record.getMessage()
    assert record.exc_info and record.exc_info[0] is ZeroDivisionError


def test_a_connection_shut_by_another_greenlet_reads_eof_not_an_error():
    """The sweeper ends a request head that came too slowly (408) with _shut: gevent's own
    shutdown woke the reading greenlet with cancel_wait_ex (EBADF), which gunicorn logged as
    'Socket error processing request.' with a 44-line traceback, once per 408 (2,000
    slowloris connections: about 6 MB of ERROR lines every 10 s). It reads EOF instead."""
    a, b = gevent.socket.socketpair()

    def read():
        try:
            return a.recv(100)
        except OSError as exc:
            return exc
    reader = gevent.spawn(read)
    gevent.sleep(0.05)                        # blocked in recv
    worker._shut(a)
    assert reader.get(timeout=2) == b""
    a.close()
    b.close()


def test_out_of_descriptors_the_worker_waits_before_each_try_and_starts_short_again(
        served_server, monkeypatch, caplog):   # noqa: F811 - the fixture
    """At the limit the listening socket stays readable: trying again at once (40,000 tries
    in the test's 0.2 s) burnt the worker's core for as long as no descriptor came free.
    It waits, longer after each failure, and once accepting works the next shortage
    starts from the shortest wait again, not from the longest."""
    server, address, _names = served_server
    monkeypatch.setattr(worker.BurstServer, "starved_log", LogBudget(1, 60.0))
    caplog.set_level(logging.INFO, logger="web.worker")
    accept, tries = StreamServer.do_read, []
    starved_until = time.monotonic() + 0.2

    def do_read(self):
        if time.monotonic() < starved_until:
            tries.append(time.monotonic())
            raise OSError(errno.EMFILE, "Too many open files")
        return accept(self)

    monkeypatch.setattr(StreamServer, "do_read", do_read)
    monkeypatch.setattr(gevent.get_hub(), "handle_error", lambda *args: None)
    _served(address)
    assert 2 <= len(tries) <= 10, len(tries)     # 10, 20, 40, 80 ms ... apart
    assert server.pause == server.min_delay


def test_an_accept_error_other_than_the_descriptor_limit_is_not_said_to_be_it(
        served_server, monkeypatch, caplog):   # noqa: F811 - the fixture
    """A connection the client reset before its accept (ECONNABORTED) is gevent's to report;
    saying 'ulimit -n ... raise the limit' for it sends the operator after a limit that is
    not reached."""
    _server, address, _names = served_server
    failures = [OSError(errno.ECONNABORTED, "Software caused connection abort")]
    _accept_failing(monkeypatch, failures)
    reported = []
    monkeypatch.setattr(gevent.get_hub(), "handle_error",
                        lambda context, kind, value, tb: reported.append(value))
    caplog.set_level(logging.INFO, logger="web.worker")
    _served(address)
    assert [exc.errno for exc in reported] == [errno.ECONNABORTED]
    assert [r.getMessage() for r in caplog.records if r.name == "web.worker"] == []


def test_accepting_again_is_said_when_a_connection_is_taken_not_when_another_worker_took_it(
        served_server, monkeypatch, caplog):   # noqa: F811 - the fixture
    """Every worker is woken for a connection and one takes it: the others' accept comes back
    empty. Taken for a recovery, that said 'accepting connections ... again' while this
    worker still had no descriptor (and the next warning waits a minute)."""
    _server, address, _names = served_server
    monkeypatch.setattr(worker.BurstServer, "starved_log", LogBudget(1, 60.0))
    caplog.set_level(logging.INFO, logger="web.worker")
    accept, said_before_the_accept = StreamServer.do_read, []
    script = [OSError(errno.EMFILE, "Too many open files"), None,
              OSError(errno.EMFILE, "Too many open files")]

    def do_read(self):
        if script:
            step = script.pop(0)
            if step is None:
                return None                         # another worker was quicker
            raise step
        if not said_before_the_accept:              # at the first accept that takes one
            said_before_the_accept.append(
                [r.getMessage() for r in caplog.records if r.name == "web.worker"])
        return accept(self)

    monkeypatch.setattr(StreamServer, "do_read", do_read)
    monkeypatch.setattr(gevent.get_hub(), "handle_error", lambda *args: None)
    _served(address)
    [before] = said_before_the_accept
    assert len(before) == 1 and "cannot accept" in before[0], before    # the warning alone
    lines = [r.getMessage() for r in caplog.records if r.name == "web.worker"]
    assert len(lines) == 2 and "again" in lines[1], lines
