"""Parsing of ``%%job`` / ``%job`` argument lines.

Not argparse over ``shlex``: a JSON payload such as ``--payload {"user": 1}`` must survive
unquoted (shlex would strip its quotes), so the line is cut at the known ``--flags`` and
"raw" options (payload, filter, cron) keep their text verbatim.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from ._exceptions import ConfigError

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


def parse_line(line: str, flags: FlagKinds, *, usage: str) -> ParsedLine:
    """Split ``line`` into positional words and ``--flag`` options of the given kinds.

    Raises :class:`ConfigError` (with ``usage``) for an unknown flag, a missing value or a
    flag given twice.
    """
    pattern = re.compile(r"(?<!\S)--([a-zA-Z][\w-]*)(?:=|(?=\s)|$)")
    matches = [m for m in pattern.finditer(line) if m.group(1) in flags]
    head_end = matches[0].start() if matches else len(line)
    parsed = ParsedLine()
    try:
        parsed.positional = shlex.split(line[:head_end])
    except ValueError as exc:
        raise ConfigError(f"Cannot parse {line[:head_end]!r}: {exc}. Usage: {usage}") from None
    for word in parsed.positional:
        if word.startswith("--"):
            raise ConfigError(f"Unknown option {word}. Usage: {usage}")
    for i, match in enumerate(matches):
        name = match.group(1)
        end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
        text = line[match.end() : end].strip()
        kind = flags[name]
        key = name.replace("-", "_")
        if key in parsed.options:
            raise ConfigError(f"--{name} is given twice. Usage: {usage}")
        if kind == "bool":
            if text:
                raise ConfigError(f"--{name} takes no value (got {text!r}). Usage: {usage}")
            parsed.options[key] = True
        elif not text:
            raise ConfigError(f"--{name} needs a value. Usage: {usage}")
        elif kind == "raw":
            parsed.options[key] = text
        else:
            try:
                words = shlex.split(text)
            except ValueError as exc:
                raise ConfigError(f"Cannot parse --{name} {text!r}: {exc}.") from None
            if len(words) != 1 or words[0].startswith("--"):
                raise ConfigError(f"--{name} takes one value, got {text!r}. Usage: {usage}")
            parsed.options[key] = words[0]
    unknown = [
        m.group(0).strip() for m in pattern.finditer(line[head_end:]) if m.group(1) not in flags
    ]
    raw_text = " ".join(str(v) for k, v in parsed.options.items() if flags.get(k) == "raw")
    unknown = [u for u in unknown if u not in raw_text]
    if unknown:
        raise ConfigError(f"Unknown option {unknown[0]}. Usage: {usage}")
    return parsed


def parse_cron(text: str) -> str:
    return _unquote(text)


def parse_json_or_python(text: str, namespace: dict[str, Any], *, what: str) -> Any:
    """``text`` as JSON; failing that, a Python expression in ``namespace`` (SPEC §2)."""
    import json

    from ._exceptions import PayloadError

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
