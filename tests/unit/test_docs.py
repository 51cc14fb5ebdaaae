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
