"""service/main.py: what a worker says at start about the instance's settings (subscriber
auth and its warnings) is said once per instance, not once per worker."""
import logging
from types import SimpleNamespace

from actors.settings import Settings
from service import main as service_main


class FakeAuth:
    def __init__(self):
        self.prefetched = 0

    def describe(self):
        return "subscriber auth required; algorithms HS256"

    def prefetch(self):
        self.prefetched += 1


def _gateway(**settings):
    return SimpleNamespace(auth=FakeAuth(), settings=Settings.defaults(
        auth_cookie_name="sse", **settings))


def _said(caplog, text):
    return sum(text in record.getMessage() for record in caplog.records)


def test_the_workers_of_an_instance_say_it_once(caplog, tmp_path):
    gateways = [_gateway() for _ in range(3)]
    with caplog.at_level(logging.INFO, logger="service.main"):
        for gateway in gateways:
            service_main._announce_auth(gateway, str(tmp_path))
    assert _said(caplog, "AUTH_TICKET_SECRET is not set") == 1
    assert _said(caplog, "CORS_ALLOWED_ORIGINS=*") == 1
    assert _said(caplog, "subscriber auth required") == 1
    assert [g.auth.prefetched for g in gateways] == [1, 1, 1]     # each worker's own keys


def test_a_changed_configuration_is_said_again(caplog, tmp_path):
    """After a reload (SIGHUP) new workers may read another .env: what they say differs."""
    with caplog.at_level(logging.INFO, logger="service.main"):
        service_main._announce_auth(_gateway(), str(tmp_path))
        service_main._announce_auth(_gateway(cors_allowed_origins=("https://a.example",)),
                                    str(tmp_path))
    assert _said(caplog, "AUTH_TICKET_SECRET is not set") == 2
    assert _said(caplog, "CORS_ALLOWED_ORIGINS=*") == 1


def test_a_process_of_its_own_says_it_every_time(caplog):
    with caplog.at_level(logging.INFO, logger="service.main"):
        service_main._announce_auth(_gateway(), "")
        service_main._announce_auth(_gateway(), "")
    assert _said(caplog, "AUTH_TICKET_SECRET is not set") == 2
