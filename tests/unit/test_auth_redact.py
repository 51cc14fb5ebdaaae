"""Credentials never reach a log line: query values and known secrets are masked."""
import pytest

from actors.auth.redact import redact_query, redact_text


@pytest.mark.parametrize("raw, redacted", [
    ("/events?ticket=abc.def", "/events?ticket=***"),
    ("/events?event_types=a.*&ticket=abc&sources=b",
     "/events?event_types=a.*&ticket=***&sources=b"),
    ("/events?TOKEN=x&Access_Token=y&jwt=z&jwt=w",
     "/events?TOKEN=***&Access_Token=***&jwt=***&jwt=***"),
    ("/events?%74icket=abc", "/events?%74icket=***"),
    ("/events?ticket=a=b=c", "/events?ticket=***"),
    ("/events?ticket=", "/events?ticket=***"),
])
def test_credential_values_are_masked(raw, redacted):
    assert redact_query(raw) == redacted


@pytest.mark.parametrize("untouched", [
    "/events", "/events?", "/events?event_types=ticket&sources=token",
    "/events?tickets=1&my_token=2", "/events?ticket", "/health?x=1&&y=2"])
def test_everything_else_is_left_as_it_was(untouched):
    assert redact_query(untouched) == untouched


def test_redact_text_masks_every_secret_the_longest_first():
    line = 'GET /t?x=abc.defg "Bearer abc.defg" abc'
    assert redact_text(line, ["abc", "abc.defg", ""]) == 'GET /t?x=*** "Bearer ***" ***'


def test_redact_text_without_secrets_changes_nothing():
    assert redact_text("plain line", []) == "plain line"
