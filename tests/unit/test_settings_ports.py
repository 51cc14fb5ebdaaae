"""The listeners' ports must differ: gunicorn takes HTTP_PORT (and ADMIN_PORT) first, and a
worker that finds GRPC_PORT taken retries it for ever (a busy port is taken for another
worker's), so the management API would never start."""
import pytest

from actors.settings import Settings, SettingsError


@pytest.mark.parametrize("environ, said", [
    ({"GRPC_PORT": "8084"}, "GRPC_PORT=8084 is HTTP_PORT too"),
    ({"GRPC_PORT": "9184", "ADMIN_PORT": "9184"}, "GRPC_PORT=9184 is ADMIN_PORT too"),
])
def test_the_grpc_port_must_differ_from_the_http_and_admin_ports(environ, said):
    with pytest.raises(SettingsError, match=said):
        Settings.from_env(environ, env_file=None)


def test_ports_that_are_off_never_clash():
    settings = Settings.from_env({"GRPC_PORT": "0", "ADMIN_PORT": "0"}, env_file=None)
    assert (settings.grpc_port, settings.admin_port) == (0, 0)
