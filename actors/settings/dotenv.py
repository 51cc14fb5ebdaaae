"""The optional `.env` file: NAME=value lines, read as a shell would not (no expansion), and
the lines that do not do what they look like."""
from __future__ import annotations

import re
from pathlib import Path

from actors.settings.variables import SettingsError


def read_env_file(path) -> dict:
    """Parse KEY=VALUE lines of a dotenv file; a missing file is an empty one."""
    file = Path(path)
    if file.is_dir():
        raise SettingsError(f"{path} is a directory, not a file of NAME=value lines (docker "
                            "makes one where a mounted file's host path does not exist): mount "
                            "the file, or remove the directory")
    if not file.is_file():
        return {}
    try:
        text = file.read_text(encoding="utf-8-sig")   # a BOM is no part of a name
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise SettingsError(f"{path}: cannot read the file ({reason}); fix it or remove it "
                            "(the environment alone is then used)") from None
    return {name: _unquoted(value) for _number, name, assigned, value in _dotenv_lines(text)
            if assigned and is_name(name)}


def _dotenv_lines(text: str):
    """(line number, name, has `=`, value as written) of each line not blank nor a comment."""
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            key, equals, value = line.partition("=")
            key = _EXPORT.sub("", key.strip(), count=1)
            yield number, key, bool(equals), value.strip()


_EXPORT = re.compile(r"^export\s+")      # a shell's `export NAME=value`, a tab as well
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_name(text: str) -> bool:
    return _NAME.fullmatch(text) is not None


def env_file_warnings(path=".env") -> list[str]:
    """Lines of a dotenv file that do not do what they look like: one without `=`, or whose
    name is none (both ignored), a name set again (the last line is taken), and a value with
    an unquoted ` #` (kept whole: no comment follows a value here). Values are never shown."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeError):
        return []                        # missing: nothing to say; unreadable: from_env says it
    warnings: list[str] = []
    first: dict[str, int] = {}
    for number, name, assigned, value in _dotenv_lines(text):
        if not assigned:
            warnings.append(f"{path} line {number} is not NAME=value: it is ignored")
            continue
        if not is_name(name):
            warnings.append(f"{path} line {number}: {_not_a_name(name)}: the line is ignored")
            continue
        if name in first:
            warnings.append(f"{path} sets {name} on lines {first[name]} and {number}: line "
                            f"{number} is taken; remove the other")
        first.setdefault(name, number)
        if " #" in value.replace("\t", " ") and _unquoted(value) == value:
            warnings.append(f"{path} line {number} ({name}): ' #' does not start a comment "
                            f"after a value, it is part of it: put the comment on a line of its "
                            f"own, or quote the value if the # belongs to it")
    return warnings


_TYPO = re.compile(r"[A-Z0-9_.-]{1,40}")     # HTTP-PORT, LOG.LEVEL: a name mistyped


def _not_a_name(name: str) -> str:
    """What is wrong with the text before a line's `=`, showing nothing that may be a value: a
    line missing its `=` runs on into its value (a secret) up to an `=` inside it, and a
    secret pasted over two lines puts its second half where a name stands."""
    lead = _NAME.match(name)
    if lead is not None and name[lead.end()] in " \t" and _TYPO.fullmatch(lead.group()):
        after = "a space" if name[lead.end()] == " " else "a tab"
        return f"{lead.group()!r} is followed by {after}, not `=` (write NAME=value)"
    if _TYPO.fullmatch(name):
        return (f"{name!r} is not a variable name (letters, digits and _, not starting "
                f"with a digit)")
    return "no variable name before its `=` (letters, digits and _, in upper case)"


def _unquoted(value: str) -> str:
    """One pair of matching quotes around the value removed; a quote of the value kept."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value

