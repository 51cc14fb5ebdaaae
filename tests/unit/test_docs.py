"""The README's configuration table, .env.example and the settings module agree."""
import re
from pathlib import Path

from actors.settings import VARIABLES, read_env_file

ROOT = Path(__file__).parents[2]


def _readme_table():
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        match = re.match(r"\| `([A-Z_]+)` \| (?:`([^`]*)`|\(empty\)) \| (.+) \|$", line)
        if match:
            rows[match.group(1)] = match.group(2) or ""
    return rows


def test_readme_table_lists_every_variable_with_its_default():
    assert _readme_table() == {name: default for name, (default, _p, _m) in VARIABLES.items()}


def test_env_example_matches_the_settings():
    example = read_env_file(ROOT / ".env.example")
    assert example == {name: default for name, (default, _p, _m) in VARIABLES.items()}


def test_readme_shows_the_two_commands_and_the_seed_curl_examples():
    text = (ROOT / "README.md").read_text()
    for snippet in ("make run", "make test", 'event_types=*.created&sources=blog-service',
                    "sse.SSEManagementService/GetStats"):
        assert snippet in text


def _auth_section():
    text = (ROOT / "README.md").read_text()
    start = text.index("## Subscriber authentication")
    return text[start:text.index("\n## ", start + 1)]


def test_readme_auth_section_names_the_disconnect_subject_rpc_as_the_proto_does():
    proto = (ROOT / "proto" / "sse.proto").read_text()
    package = re.search(r"^package (\w+);", proto, re.M).group(1)
    service = re.search(r"^service (\w+) \{", proto, re.M).group(1)
    assert re.search(r"rpc DisconnectSubject\(DisconnectSubjectRequest\)", proto)
    for field in ("subject", "reason"):
        assert re.search(rf"message DisconnectSubjectRequest \{{[^}}]*string {field} = \d+;",
                         proto)
    port = VARIABLES["GRPC_PORT"][0]
    line = (f"""grpcurl -plaintext -d '{{"subject":"alice","reason":"revoked"}}' """
            f"localhost:{port} {package}.{service}/DisconnectSubject")
    assert line in _auth_section()


def test_readme_auth_section_shows_the_auth_expired_frame_the_gateway_sends():
    from actors import framing
    frame = framing.auth_expired("token expired").decode()
    assert f"```\n{frame.rstrip()}\n```" in _auth_section()


def test_readme_auth_section_gives_the_credential_sources_in_the_authenticators_order():
    import inspect

    from actors.auth.authenticator import Authenticator
    section = _auth_section()
    listed = [section.index(s) for s in ("1. `Authorization: Bearer", "2. The cookie named by "
                                         "`AUTH_COOKIE_NAME`", "3. `?ticket=")]
    assert listed == sorted(listed)
    code = inspect.getsource(Authenticator.identify)
    checked = [code.index(s) for s in ("if bearer:", "if cookie:", "if ticket:")]
    assert checked == sorted(checked)


def test_readme_auth_section_mentions_every_auth_variable_and_uses_real_names():
    from web.errors import REFUSALS
    section = _auth_section()
    for name in VARIABLES:
        if name.startswith("AUTH_") or name == "SSE_MAX_CLIENTS_PER_SUBJECT":
            assert f"`{name}`" in section, name
    assert "too_many_streams_per_subject" in REFUSALS
    for snippet in ("POST /tickets", "addEventListener('auth-expired'", "last_event_id",
                    "too_many_streams_per_subject", "ticket=REDACTED"):
        assert snippet in section, snippet
