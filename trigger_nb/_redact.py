"""Secrets in request headers: ``redact_string`` (SPEC §6.5, §8; v2 §2.11 ``redactString``).

v2's tagged template produced ``{__redactedString: true, strings, interpolations}``; the
dashboard drew every interpolation as ``********`` and only the server's fetch operation put the
real value back together. Here the same idea is a ``str`` subclass whose *text* is the redacted
form: whatever treats it as a string — ``str()``, ``repr()``, f-strings, ``json.dumps``,
``jsonable_for_display``, the store, pickle, a log line — sees ``Bearer ********``. The real
value is reachable only through :meth:`RedactedString._reveal`, which the background HTTP
operations call at the moment they send a request. Failing safe is the point: forgetting to
reveal sends the redacted text, never stores the secret.

Guarantees (tested in ``tests/test_redaction.py``):

- immutable: no attribute can be set or deleted; ``copy``/``deepcopy`` return the object itself;
- pickling yields the plain redacted ``str`` (the secret is not in the pickle);
- ``RedactedString`` objects compare and hash as their redacted text (two secrets with the same
  template are equal), exactly like the strings they look like.

Helpers for the HTTP operations: :func:`reveal` (nested values → real values, at send time),
:func:`conceal` (nested values → plain redacted ``str``, for params), :func:`secrets_in` and
:func:`scrub` (replace any secret that slipped into an error message or a log entry, also in
its ``repr``/JSON-escaped forms).
"""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn
from urllib.parse import quote, quote_plus

REDACTED = "********"
"""What every interpolated value looks like (v2's dashboard rendering)."""

_FORMATTER = string.Formatter()


class _Hidden:
    """Holds the real text; its repr and pickling never show it."""

    __slots__ = ("real", "secrets")

    def __init__(self, real: str, secrets: tuple[str, ...]) -> None:
        self.real = real
        self.secrets = secrets

    def __repr__(self) -> str:
        return "<hidden>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a redacted secret cannot be pickled")


class RedactedString(str):
    """A string built by :func:`redact_string`: its text is the redacted form.

    Do not create it directly; call ``redact_string(template, *values)``.
    """

    _hidden: _Hidden

    def __new__(cls, shown: str, hidden: _Hidden) -> RedactedString:
        self = super().__new__(cls, shown)
        object.__setattr__(self, "_hidden", hidden)
        return self

    def _reveal(self) -> str:
        """The real value. Internal: only for the moment an HTTP request is sent."""
        return self._hidden.real

    def _secret_values(self) -> tuple[str, ...]:
        """The interpolated values as text (what must never be stored)."""
        return self._hidden.secrets

    def __repr__(self) -> str:
        return f"RedactedString({str.__repr__(self)})"

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("RedactedString is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("RedactedString is immutable")

    def __copy__(self) -> RedactedString:
        return self

    def __deepcopy__(self, memo: Any) -> RedactedString:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (an output with serializer="pickle", multiprocessing): only the redacted text.
        return (str, (str.__str__(self),))

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return self.__reduce__()


def _check_template(template: str, count: int) -> None:
    auto = 0
    manual: set[int] = set()
    try:
        fields = list(_FORMATTER.parse(template))
    except ValueError as exc:  # a lone "{" or "}"
        raise _template_error(f"it is not a valid format string ({exc})") from None
    for _literal, name, spec, conversion in fields:
        if name is None:
            continue
        if spec or conversion:
            raise _template_error("placeholders take no conversion or format spec")
        if name == "":
            auto += 1
        elif name.isascii() and name.isdigit():
            manual.add(int(name))
        else:
            raise _template_error(f"named placeholder {{{name}}} is not supported")
    if auto and manual:
        raise _template_error("it mixes {} and {0}-style placeholders")
    if manual:
        if manual != set(range(count)):
            raise _template_error(
                f"its numbered placeholders {sorted(manual)} do not use each of the {count} "
                "value(s) exactly by index 0..n-1"
            )
    elif auto != count:
        raise _template_error(f"it has {auto} placeholder(s) for {count} value(s)")


def _template_error(reason: str) -> TypeError:
    return TypeError(
        f"redact_string(template, *values): {reason}. Use one {{}} per value, e.g. "
        'redact_string("Bearer {}", api_key).'
    )


def redact_string(template: str, *values: Any) -> RedactedString:
    """A string that is sent in full but shown and stored as ``template`` with ``********``.

    ``template`` uses ``str.format`` placeholders, one per value: ``{}`` or ``{0}``, ``{1}``
    (no names, conversions or format specs). Values are turned into text with ``str()``; a
    value that is itself a ``RedactedString`` contributes its real text.

    Use it for request headers of ``io.background_fetch`` / ``background_fetch_response`` /
    ``background_poll`` (SPEC §6.5): the secret reaches the server, while params, the task log,
    errors and the store only ever see ``Bearer ********``.

    Raises ``TypeError`` if ``template`` is not a string or the placeholders do not match the
    values (the message never contains the values).
    """
    if not isinstance(template, str):
        raise TypeError(
            f"redact_string(template, *values): template must be a str, not {type(template).__name__}."
        )
    _check_template(template, len(values))
    texts = tuple(v._reveal() if isinstance(v, RedactedString) else str(v) for v in values)
    nested = tuple(s for v in values if isinstance(v, RedactedString) for s in v._secret_values())
    shown = template.format(*([REDACTED] * len(values)))
    real = template.format(*texts)
    secrets = tuple(dict.fromkeys(s for s in (*texts, *nested) if s))
    return RedactedString(shown, _Hidden(real, secrets))


def reveal(value: Any) -> Any:
    """``value`` with every nested ``RedactedString`` replaced by its real text (send time)."""
    if isinstance(value, RedactedString):
        return value._reveal()
    if isinstance(value, Mapping):
        return {reveal(k): reveal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [reveal(v) for v in value]
    return value


def conceal(value: Any) -> Any:
    """``value`` with every nested ``RedactedString`` replaced by a plain redacted ``str``."""
    if isinstance(value, RedactedString):
        return str.__str__(value)
    if isinstance(value, Mapping):
        return {conceal(k): conceal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [conceal(v) for v in value]
    return value


def secrets_in(value: Any) -> tuple[str, ...]:
    """The secret texts of every ``RedactedString`` nested in ``value`` (no duplicates)."""
    found: dict[str, None] = {}

    def walk(v: Any) -> None:
        if isinstance(v, RedactedString):
            found.update(dict.fromkeys(v._secret_values()))
        elif isinstance(v, Mapping):
            for k, item in v.items():
                walk(k)
                walk(item)
        elif isinstance(v, (list, tuple)):
            for item in v:
                walk(item)

    walk(value)
    return tuple(s for s in found if s)


#: Encoded forms are derived for secrets at least this long: the hex or base64 of a very short
#: secret ("ab" is "6162") is a common substring, and replacing it would mangle messages.
_MIN_ENCODED = 6


def _variants(secrets: Iterable[str]) -> list[str]:
    """Each secret as it may appear in a message: raw, repr-escaped, JSON-escaped, bytes repr,
    URL-encoded (``%2F``, ``+`` for spaces), base64 (standard and URL-safe, with or without
    padding) and hex. What cannot be caught this way — a secret inside a larger base64 or
    encrypted blob, hashed, split or re-cased — is said in the README."""
    out: dict[str, None] = {}
    for secret in secrets:
        out[secret] = None
        out[repr(secret)[1:-1]] = None
        out[json.dumps(secret)[1:-1]] = None
        out[json.dumps(secret, ensure_ascii=False)[1:-1]] = None
        raw = secret.encode("utf-8", "backslashreplace")
        out[repr(raw)[2:-1]] = None
        if len(secret) < _MIN_ENCODED:
            continue
        for quoted in (quote(secret, safe=""), quote(secret), quote_plus(secret, safe="")):
            out[quoted] = None
            out[quoted.lower()] = None  # %2f: percent-escapes are case-insensitive
        for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
            text = encoded.decode("ascii")
            out[text] = None
            out[text.rstrip("=")] = None
        out[raw.hex()] = None
        out[raw.hex().upper()] = None
    # Longest first: a secret that contains another must be replaced whole.
    return sorted((v for v in out if v), key=len, reverse=True)


def scrub(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` (JSON-like) with every occurrence of a secret in its strings replaced by
    ``********`` — for error messages and log entries that might echo a header."""
    variants = _variants(secrets)
    if not variants:
        return value

    def clean(text: str) -> str:
        for variant in variants:
            if variant in text:
                text = text.replace(variant, REDACTED)
        return text

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return clean(str.__str__(v))
        if isinstance(v, Mapping):
            return {walk(k): walk(item) for k, item in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(item) for item in v]
        return v

    return walk(value)


__all__ = [
    "REDACTED",
    "RedactedString",
    "conceal",
    "redact_string",
    "reveal",
    "scrub",
    "secrets_in",
]
