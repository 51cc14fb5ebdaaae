import pytest

from actors.settings import Settings, SettingsError


def test_defaults_follow_the_specification():
    s = Settings.from_env(environ={}, env_file=None)
    assert (s.sse_max_clients, s.sse_heartbeat_seconds, s.sse_event_buffer_size,
            s.sse_history_size) == (1000, 30, 100, 100)
    assert (s.http_port, s.grpc_port, s.grpc_host) == (8084, 9094, "127.0.0.1")
    assert s.cors_allowed_origins == ("*",) and s.rate_limit_enabled is True
    assert s.kafka_topics[0] == "blog.posts" and s.trusted_proxies == ()


def test_every_bad_value_is_named_in_one_error():
    with pytest.raises(SettingsError) as err:
        Settings.from_env(environ={"SSE_MAX_CLIENTS": "lots", "HTTP_PORT": "70000",
                                   "RATE_LIMIT_ENABLED": "maybe"}, env_file=None)
    text = str(err.value)
    assert "SSE_MAX_CLIENTS='lots'" in text and "HTTP_PORT='70000'" in text
    assert "RATE_LIMIT_ENABLED='maybe': expected true or false" in text


def test_wildcard_topics_are_refused_with_an_explanation():
    with pytest.raises(SettingsError, match="wildcard.*event_types"):
        Settings.from_env(environ={"KAFKA_TOPICS": "blog.*"}, env_file=None)


def test_env_file_is_read_and_environment_wins(tmp_path):
    env = tmp_path / ".env"
    env.write_text("# comment\nSSE_HISTORY_SIZE=7\nexport HTTP_PORT='9000'\nLOG_LEVEL=debug\n")
    s = Settings.from_env(environ={"SSE_HISTORY_SIZE": "8"}, env_file=env)
    assert (s.sse_history_size, s.http_port, s.log_level) == (8, 9000, "DEBUG")
