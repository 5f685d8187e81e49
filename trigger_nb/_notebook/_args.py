"""Parsing of ``%%job`` / ``%job`` argument lines.

Not argparse over ``shlex``: a JSON payload such as ``--payload {"user": 1}`` must survive
unquoted (shlex would strip its quotes), so the line is cut at the known ``--flags`` and
"raw" options (payload, filter, cron) keep their text verbatim.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import ConfigError

#: flag -> kind: "bool" takes no value, "raw" keeps its text verbatim, "word" is one token.
FlagKinds = dict[str, str]

CELL_FLAGS: FlagKinds = {
    "payload": "raw",
    "run": "word",
    "new": "bool",
    "name": "word",
    "version": "word",
    "wait": "bool",
    "timeout": "word",
    "out": "word",
    "quiet": "bool",
    "pickle": "bool",
    "rerun-changed": "bool",
    "on": "word",
    "filter": "raw",
    "source": "word",
    "every": "word",
    "cron": "raw",
}


@dataclass
class ParsedLine:
    positional: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


_FLAG = re.compile(r"(?<!\S)--([a-zA-Z][\w-]*)(?:=|(?=\s)|$)")
_JSON_START = "{[\""


def _json_extent(line: str, start: int) -> int | None:
    """End index of the JSON value starting at ``start`` (after spaces), or None if none.

    Lets ``--payload {"cmd": "pytest --timeout 5"}`` keep the flag-like text in its string.
    """
    while start < len(line) and line[start].isspace():
        start += 1
    if start >= len(line) or line[start] not in _JSON_START:
        return None
    try:
        _, end = json.JSONDecoder().raw_decode(line, start)
    except ValueError:
        return None
    rest = line[end:]
    return end if not rest.strip() or rest[0].isspace() else None


def parse_line(line: str, flags: FlagKinds, *, usage: str) -> ParsedLine:
    """Split ``line`` into positional words and ``--flag`` options of the given kinds.

    Raises :class:`ConfigError` (with ``usage``) for an unknown flag, a missing value or a
    flag given twice.
    """
    first = _next_flag(line, 0, flags, usage)
    head_end = first.start() if first else len(line)
    parsed = ParsedLine()
    try:
        parsed.positional = shlex.split(line[:head_end])
    except ValueError as exc:
        raise ConfigError(f"Cannot parse {line[:head_end]!r}: {exc}. Usage: {usage}") from None
    for word in parsed.positional:
        if word.startswith("--"):
            raise ConfigError(f"Unknown option {word}. Usage: {usage}")
    match = first
    while match is not None:
        name = match.group(1)
        kind = flags[name]
        key = name.replace("-", "_")
        json_end = _json_extent(line, match.end()) if kind == "raw" else None
        if json_end is not None:
            text, after = line[match.end() : json_end].strip(), json_end
            following = _next_flag(line, after, flags, usage)
            leftover = line[after : following.start() if following else len(line)].strip()
            if leftover:
                raise ConfigError(f"Unexpected {leftover!r} after --{name}. Usage: {usage}")
        else:
            following = _next_flag(line, match.end(), flags, usage)
            text = line[match.end() : following.start() if following else len(line)].strip()
        if key in parsed.options:
            raise ConfigError(f"--{name} is given twice. Usage: {usage}")
        parsed.options[key] = _flag_value(name, kind, text, usage)
        match = following
    return parsed


def _next_flag(line: str, pos: int, flags: FlagKinds, usage: str = "") -> re.Match[str] | None:
    """The next ``--flag`` at or after ``pos``; an unknown ``--word`` there is an error."""
    for match in _FLAG.finditer(line, pos):
        if match.group(1) in flags:
            return match
        raise ConfigError(f"Unknown option --{match.group(1)}." + (f" Usage: {usage}" if usage else ""))
    return None


def _flag_value(name: str, kind: str, text: str, usage: str) -> Any:
    if kind == "bool":
        if text:
            raise ConfigError(f"--{name} takes no value (got {text!r}). Usage: {usage}")
        return True
    if not text:
        raise ConfigError(f"--{name} needs a value. Usage: {usage}")
    if kind == "raw":
        return text
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"Cannot parse --{name} {text!r}: {exc}.") from None
    if len(words) != 1 or words[0].startswith("--"):
        raise ConfigError(f"--{name} takes one value, got {text!r}. Usage: {usage}")
    return words[0]


def parse_cron(text: str) -> str:
    return _unquote(text)


def parse_json_or_python(text: str, namespace: dict[str, Any], *, what: str) -> Any:
    """``text`` as JSON; failing that, a Python expression in ``namespace`` (SPEC §2)."""
    from .._exceptions import PayloadError

    for candidate in dict.fromkeys((text, _unquote(text))):
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    try:
        return eval(text, namespace)  # noqa: S307 - the user's own notebook expression
    except Exception as exc:
        raise PayloadError(
            f"{what} {text!r} is neither JSON nor a Python expression that evaluates here "
            f"({type(exc).__name__}: {exc}). Examples: --payload {{\"user\": 1}} or "
            "--payload my_dict."
        ) from None


def parse_number(text: str, *, what: str, minimum: float | None = None) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{what} must be a number of seconds, got {text!r}.") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{what} must be at least {minimum:g}, got {text}.")
    return value
