"""Every whole-number setting has a range, and its largest allowed value works where it is used:
a value that passes the check must never fail later, in every worker (an OverflowError when
a count becomes a float, a pool too big for gevent)."""
import socket

import pytest
from gevent.pool import Pool

from actors import shared_limits
from actors.limiter import TokenBuckets
from actors.outbox import Outbox
from actors.settings import VARIABLES, Settings, SettingsError
from web.serve import gunicorn_config
from web.worker import door_limits, unacked_limit_ms

WHOLE_NUMBERS = [name for name, (_default, parse, _meaning) in VARIABLES.items()
                 if hasattr(parse, "bounds")]


def _largest() -> Settings:
    values = {name: str(VARIABLES[name][1].bounds[1]) for name in WHOLE_NUMBERS}
    values.update(ADMIN_PORT="0", GRPC_PORT="0")     # off: HTTP_PORT alone takes 65535
    values.update(AUTH_MODE="optional", AUTH_JWT_ALGORITHMS="HS256",   # reads the AUTH_ ones
                  AUTH_JWT_SECRET="s" * 32)
    return Settings.from_env(environ=values, env_file=None)


def test_a_burst_too_large_for_a_float_is_refused_naming_the_variable_and_its_range():
    with pytest.raises(SettingsError) as err:
        Settings.from_env(environ={"RATE_LIMIT_BURST_SIZE": "1" + "0" * 309}, env_file=None)
    assert "RATE_LIMIT_BURST_SIZE=" in str(err.value)
    assert "expected a whole number between 1 and 1000000000" in str(err.value)


def test_the_numeric_settings_are_all_bounded():
    assert len(WHOLE_NUMBERS) >= 24
    assert all(VARIABLES[name][1].bounds[1] is not None for name in WHOLE_NUMBERS)


@pytest.mark.parametrize("name", WHOLE_NUMBERS)
def test_one_past_the_range_is_refused_with_the_range(name):
    low, high = VARIABLES[name][1].bounds
    with pytest.raises(SettingsError, match=f"{name}=.*between {low} and {high}"):
        Settings.from_env(environ={name: str(high + 1)}, env_file=None)


def test_a_long_value_is_shortened_in_the_error():
    with pytest.raises(SettingsError) as err:
        Settings.from_env(environ={"SSE_MAX_CLIENTS": "9" * 4000}, env_file=None)
    assert len(str(err.value)) < 160 and "4000 characters" in str(err.value)


def test_the_largest_values_work_where_they_are_used(tmp_path):
    s = _largest()
    config = gunicorn_config(s)
    Pool(config["worker_connections"] + s.http_max_pending)   # the worker's pool (web/worker.py)
    door_limits(s)
    assert TokenBuckets(s.rate_limit_requests_per_min, s.rate_limit_burst_size,
                        clock=lambda: 0.0).take("a") == 0.0
    path = str(tmp_path / "limits")
    shared_limits.create(path, s)
    limits = shared_limits.SharedLimits.attach(path, s)
    try:
        assert limits.admit("10.0.0.1", stream=True) == (0.0, "")
    finally:
        limits.close()
    Outbox(s.sse_event_buffer_size, s.sse_event_buffer_size * s.sse_max_event_bytes)
    assert s.kafka_metadata_refresh_ms / 1000 < 1e9
    with socket.socket() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, unacked_limit_ms(s))


@pytest.mark.parametrize("name", ["HTTP_HEADER_TIMEOUT_SECONDS", "AUTH_JWKS_REFRESH_SECONDS",
                                  "SSE_HEARTBEAT_SECONDS", "AUTH_TICKET_TTL_SECONDS"])
def test_zero_seconds_is_refused_where_it_makes_no_sense(name):
    """0 would pass otherwise: no time at all for a request head, a key server asked again
    without pause, heartbeats without end, tickets dead when issued."""
    with pytest.raises(SettingsError, match=f"{name}='0': expected a whole number between 1 "):
        Settings.from_env(environ={name: "0"}, env_file=None)
