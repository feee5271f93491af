"""`/etc/environment` in pam_env syntax: `render` a variable map to the file, `parse` it back.

Format: one `KEY="VALUE"` line per variable, VALUE written verbatim (no escaping), keys sorted.
Linux-PAM's pam_env (`readenv`, checked against 1.5.2) reads such a line by dropping the quote
right after `=` and the line's last character if it is a quote, keeping everything between
literally: backslashes, `$`, `@`, both quote kinds, `=`, tabs, leading/trailing spaces, UTF-8.
So real pam_env reads our file back identically, with these limits:
- `#` anywhere ends a pam_env line, so pam_env truncates a value at its first `#`;
- pam_env stops reading the whole file at a line of 8191+ bytes, so such lines are written
  after all the others (each group sorted by key) to keep every shorter variable readable;
- newline, CR and NUL cannot be written at all (`UNREPRESENTABLE`): callers must refuse them.
`parse` applies pam_env's rules (blank lines, `#` comment lines, `export `, one surrounding
quote pair, invalid keys ignored, last duplicate wins) but keeps a mid-line `#` in the value and
has no line limit, so `parse(render(v)) == v` for every representable map. Other readers
(shells, systemd environment.d) unescape and expand, so they may read some values differently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

UNREPRESENTABLE = ("\n", "\r", "\x00")
"""Characters no `/etc/environment` line can hold, in keys or values."""

PAM_LINE_MAX = 8190
"""Longest line (in bytes, without its newline) that Linux-PAM's pam_env reads."""

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PAM_KEY = re.compile(r"[A-Za-z0-9_]+")  # pam_env accepts any alphanumeric key when reading
_QUOTES = "\"'"


def _line(key: str, value: str) -> str:
    if not _KEY.fullmatch(key):
        raise ValueError(f"{key!r} is not a valid variable name for /etc/environment")
    if any(char in value for char in UNREPRESENTABLE):
        raise ValueError(f"the value of {key} has a newline, CR or NUL, which /etc/environment cannot hold")
    return f'{key}="{value}"'


def login_alteration(key: str, value: str) -> str | None:
    """How a VM login (pam_env) will see `key`'s value otherwise than written, or None if intact."""
    if (len(key) + len(value)) * 4 + 3 <= PAM_LINE_MAX and "#" not in value:
        return None  # short enough whatever its UTF-8 (4 bytes a char at most): the common case, without encoding
    size = len(f'{key}="{value}"'.encode())
    if size > PAM_LINE_MAX:
        return (f"its /etc/environment line is {size} bytes and pam_env skips lines over {PAM_LINE_MAX}, so a "
                "login in a VM will not see it at all")
    if "#" in value:
        return "it holds '#', where pam_env ends a value, so a login in a VM sees only what comes before it"
    return None


def render(variables: Mapping[str, str]) -> str:
    """The `/etc/environment` text for `variables` (deterministic, newline-terminated)."""
    lines = sorted(_line(key, value) for key, value in variables.items())
    lines.sort(key=lambda line: len(line.encode()) > PAM_LINE_MAX)  # stable: sorted within each group
    return "".join(line + "\n" for line in lines)


def parse(text: str) -> dict[str, str]:
    """The variables a pam_env-syntax file defines (see the module docstring for the rules)."""
    variables: dict[str, str] = {}
    for raw in text.split("\n"):
        line = raw.lstrip(" \t")
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        key, equals, value = line.partition("=")
        if not equals or not _PAM_KEY.fullmatch(key):
            continue  # pam_env ignores bad keys and treats `KEY` alone as "unset", a no-op here
        if value[:1] in _QUOTES:
            value = value[1:]
            if value and value[-1] in _QUOTES:
                value = value[:-1]
        variables[key] = value
    return variables
