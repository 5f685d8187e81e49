"""EventFilter and response-filter matching (SPEC §7, §6.6): pure functions, no I/O.

Theory of operation
-------------------
An EventFilter is a dict and every key must pass (AND). The pattern under a key is either

* a list: ``[]`` passes, even for a missing key; only strings, only numbers or only booleans is an
  OR over literals compared like JS ``===`` (same kind and value: ``1`` matches ``1.0`` but not
  ``True`` nor ``"1"``; an array value never matches); otherwise it is an AND over its
  content-filter objects such as ``{"$gt": 1}`` (v2 ignores any non-object element);
* a dict: a nested filter applied to the value, or to *any* element when the value is an array.

"Missing" (the key is absent) and ``None`` (JSON null) are different values: a private sentinel
stands for missing so that ``$exists`` and ``$isNull`` tell them apart as v2's ``undefined`` and
``null`` do. A missing or null value matches a nested filter only when that filter is empty.

Filters are checked once, when a job or wait is defined, by `validate_event_filter` and
`validate_response_filter`; the matchers assume a valid filter and never raise on JSON-like data.
``deep_merge_filters`` is v2's ``deepMergeFilters`` (dicts merge recursively, the later list or
scalar wins).

Deliberate deviations from v2 (reference §5.3.1, §5.5; SPEC §12)
----------------------------------------------------------------
1. A content-filter object with several operators passes only when *all* of them pass. v2 tested
   only the first one present in a fixed order, so ``{"$gt": 1, "$lt": 5}`` ignored ``$lt``.
2. Response filters check ``status`` and ``headers`` as intended: v2 never checked the status and
   matched headers against a ``Headers`` object, so any header filter failed. Header names are
   compared case-insensitively.
3. ``$ignoreCaseEquals`` compares NFC-normalised, casefolded strings: close to, not exactly, ICU
   "accent" sensitivity (``localeCompare``).
4. Validation rejects what v2 accepted silently: unknown operators (v2: pass), lists mixing kinds
   such as ``["a", {"$startsWith": "b"}]`` (v2 dropped ``"a"``), empty content-filter objects,
   ``$between`` with low > high, non-string keys, and bare operators outside a list.
5. Only objects have keys. JS also indexes strings and arrays (``"length"``, ``"0"``); here a
   non-object value has no keys.
"""

from __future__ import annotations

import copy
import enum
import json
import reprlib
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple, TypedDict

from .._exceptions import EventFilterError

__all__ = [
    "HttpResponse",
    "deep_merge_filters",
    "event_filter_matches",
    "response_filter_matches",
    "validate_event_filter",
    "validate_response_filter",
]


class _HttpResponseParts(TypedDict):
    status: int
    headers: Mapping[str, str]
    body: Any  # the parsed JSON, or the raw text (a str) when the body is not JSON


class HttpResponse(_HttpResponseParts, total=False):
    """What a response filter sees of one HTTP response.

    ``body_is_json`` tells a JSON string body (``"ready"``, which a body filter may match) from
    a body that is not JSON (text, which fails any body filter); without it a str body counts as
    not JSON."""

    body_is_json: bool


class _Missing(enum.Enum):
    """The value of an absent key: v2's ``undefined``, distinct from ``None`` (``null``)."""

    MISSING = "missing"


_MISSING: Final = _Missing.MISSING


# --- JSON value kinds and JS-style equality ------------------------------------------------------


def _kind(value: Any) -> str | None:
    """``"boolean"``, ``"number"`` or ``"string"`` for a JSON scalar, else ``None``."""
    # bool first: in Python True is an int, in JS a boolean is never a number.
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _is_number(value: Any) -> bool:
    return _kind(value) == "number"


def _is_scalar(value: Any) -> bool:
    return _kind(value) is not None


def _is_array(value: Any) -> bool:
    # Tuples count: a Python payload that is never round-tripped through JSON may hold them.
    return isinstance(value, (list, tuple))


def _strict_equals(a: Any, b: Any) -> bool:
    """JS ``a === b`` for scalars: same kind and equal; objects, arrays, null, missing: never."""
    kind = _kind(a)
    return kind is not None and kind == _kind(b) and a == b


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


# --- operators: one table for matching and validation -------------------------------------------


class _Operator(NamedTuple):
    test: Callable[[Any, Any], bool]  # (payload value or _MISSING, operand) -> passes
    operand_ok: Callable[[Any], bool]
    operand: str  # what operand_ok accepts, for error messages


def _anything_but(value: Any, operand: Any) -> bool:
    excluded = operand if isinstance(operand, list) else [operand]
    return not any(_strict_equals(value, item) for item in excluded)


def _not(value: Any, operand: Any) -> bool:
    if _is_array(value):
        return not any(_strict_equals(item, operand) for item in value)
    if _is_scalar(value):
        return not _strict_equals(value, operand)
    return False  # v2: missing, null and objects never pass $not


def _is_range(operand: Any) -> bool:
    return (
        isinstance(operand, list)
        and len(operand) == 2
        and all(map(_is_number, operand))
        and operand[0] <= operand[1]
    )


def _is_str(operand: Any) -> bool:
    return isinstance(operand, str)


def _is_bool(operand: Any) -> bool:
    return isinstance(operand, bool)


def _is_scalar_or_list(operand: Any) -> bool:
    return _is_scalar(operand) or (isinstance(operand, list) and all(map(_is_scalar, operand)))


_A_STRING = "a string"
_A_BOOL = "True or False"
_A_NUMBER = "a number (int or float, not bool)"
_A_SCALAR = "a string, number or boolean"

# In v2's lookup order (reference §5.3.1), which is also the order error messages list them in.
_OPERATORS: Final[dict[str, _Operator]] = {
    "$endsWith": _Operator(lambda v, s: isinstance(v, str) and v.endswith(s), _is_str, _A_STRING),
    "$startsWith": _Operator(
        lambda v, s: isinstance(v, str) and v.startswith(s), _is_str, _A_STRING
    ),
    "$anythingBut": _Operator(_anything_but, _is_scalar_or_list, f"{_A_SCALAR}, or a list of them"),
    "$exists": _Operator(lambda v, want: (v is not _MISSING) == want, _is_bool, _A_BOOL),
    "$gt": _Operator(lambda v, n: _is_number(v) and v > n, _is_number, _A_NUMBER),
    "$lt": _Operator(lambda v, n: _is_number(v) and v < n, _is_number, _A_NUMBER),
    "$gte": _Operator(lambda v, n: _is_number(v) and v >= n, _is_number, _A_NUMBER),
    "$lte": _Operator(lambda v, n: _is_number(v) and v <= n, _is_number, _A_NUMBER),
    "$between": _Operator(
        lambda v, r: _is_number(v) and r[0] <= v <= r[1],
        _is_range,
        "a list of two numbers [low, high] with low <= high",
    ),
    "$includes": _Operator(
        lambda v, x: _is_array(v) and any(_strict_equals(item, x) for item in v),
        _is_scalar,
        _A_SCALAR,
    ),
    "$ignoreCaseEquals": _Operator(
        lambda v, s: isinstance(v, str) and _fold(v) == _fold(s), _is_str, _A_STRING
    ),
    # Missing is not null here, so a missing value passes {"$isNull": False} (as in v2).
    "$isNull": _Operator(lambda v, want: (v is None) == want, _is_bool, _A_BOOL),
    "$not": _Operator(_not, _is_scalar, _A_SCALAR),
}

# Header values are strings: only the operators that can say something about a string or about
# a header being absent (v2's StringMatch allowed the first three).
_HEADER_OPERATORS: Final = (
    "$startsWith",
    "$endsWith",
    "$ignoreCaseEquals",
    "$anythingBut",
    "$exists",
)


# --- matching -------------------------------------------------------------------------------------


def event_filter_matches(payload: Any, filter: Mapping[str, Any]) -> bool:
    """Whether ``payload`` matches the EventFilter ``filter`` (v2 semantics, reference §5.3.1).

    ``filter`` must be valid (see `validate_event_filter`); ``payload`` is any JSON-like value.
    A ``None`` payload matches only the empty filter. Never raises for a valid filter.
    """
    return _filter_matches(payload, filter)


def _filter_matches(payload: Any, filter: Mapping[str, Any]) -> bool:
    if payload is None or payload is _MISSING:
        return not filter
    return all(_pattern_matches(_lookup(payload, key), pattern) for key, pattern in filter.items())


def _lookup(payload: Any, key: str) -> Any:
    if isinstance(payload, Mapping):
        return payload.get(key, _MISSING)
    return _MISSING


def _pattern_matches(value: Any, pattern: Any) -> bool:
    if isinstance(pattern, list):
        return _list_matches(value, pattern)
    if isinstance(pattern, Mapping):
        if _is_array(value):
            return any(_filter_matches(item, pattern) for item in value)
        return _filter_matches(value, pattern)
    return True  # v2 ignores any other pattern; validation rejects it


def _list_matches(value: Any, pattern: list[Any]) -> bool:
    if not pattern:
        return True
    kinds = {_kind(item) for item in pattern}
    if len(kinds) == 1 and None not in kinds:
        return any(_strict_equals(value, literal) for literal in pattern)
    return all(
        _content_filter_matches(value, item) for item in pattern if isinstance(item, Mapping)
    )


def _content_filter_matches(value: Any, content_filter: Mapping[str, Any]) -> bool:
    # Deviation 1: every operator must pass, not just the first. Unknown operators pass as in
    # v2; validation has already rejected them.
    return all(
        op not in _OPERATORS or _OPERATORS[op].test(value, operand)
        for op, operand in content_filter.items()
    )


def response_filter_matches(response: HttpResponse, response_filter: Mapping[str, Any]) -> bool:
    """Whether ``response`` passes ``response_filter`` (the intended v2 behaviour, SPEC §6.6).

    ``status``: the status is in the list. ``headers``: each named header (case-insensitive)
    matches its StringMatch like an EventFilter value; an absent header is missing. ``body``: an
    EventFilter on the parsed JSON; a str body counts as not JSON and fails any body filter.
    The parts present are AND-ed; absent parts pass. ``response_filter`` must be valid (see
    `validate_response_filter`). Never raises for a valid filter.
    """
    if "status" in response_filter and not any(
        _strict_equals(response["status"], code) for code in response_filter["status"]
    ):
        return False
    if "headers" in response_filter:
        headers = {name.lower(): value for name, value in response["headers"].items()}
        if not all(
            _pattern_matches(headers.get(name.lower(), _MISSING), match)
            for name, match in response_filter["headers"].items()
        ):
            return False
    if "body" in response_filter:
        body = response.get("body", _MISSING)
        # v2 fails a body filter when response.json() throws; the caller hands us text then.
        if body is _MISSING or not response.get("body_is_json", not isinstance(body, str)):
            return False
        return _filter_matches(body, response_filter["body"])
    return True


def deep_merge_filters(*filters: Mapping[str, Any]) -> dict[str, Any]:
    """Merge EventFilters left to right (v2 ``deepMergeFilters``, reference §6.2).

    Where two filters both hold a dict under a key, the dicts are merged recursively; otherwise
    (lists, scalars, or a dict meeting a non-dict) the later value wins. Returns a new dict that
    shares nothing with the inputs.
    """
    merged: dict[str, Any] = {}
    for filter in filters:
        for key, value in filter.items():
            existing = merged.get(key)
            if isinstance(existing, dict) and isinstance(value, dict):
                merged[key] = deep_merge_filters(existing, value)
            else:
                merged[key] = copy.deepcopy(value)
    return merged


# --- validation -----------------------------------------------------------------------------------

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60


def _show(value: Any) -> str:
    return _short.repr(value)


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{json.dumps(key)}]"


class _ListRules(NamedTuple):
    literal_kinds: frozenset[str]
    operators: tuple[str, ...]
    allowed: str  # what such a list may hold, for error messages


_EVENT_LIST = _ListRules(
    frozenset({"string", "number", "boolean"}),
    tuple(_OPERATORS),
    "only strings, only numbers, only booleans, or only content-filter dicts like {'$gt': 1}",
)
_HEADER_LIST = _ListRules(
    frozenset({"string"}),
    _HEADER_OPERATORS,
    "only strings, or only content-filter dicts like {'$startsWith': 'application/json'}",
)


def validate_event_filter(filter: Any, *, where: str = "filter") -> None:
    """Raise `EventFilterError` unless ``filter`` is a well-formed EventFilter.

    Checks the structure (a dict of string keys to lists or nested dicts), that every list holds
    one kind of element, and every operator and operand. The message starts with the path to the
    bad part, rooted at ``where`` (e.g. ``filter.user.age[0]``), and says what is allowed there.
    """
    if not isinstance(filter, dict):
        raise EventFilterError(
            f"{where}: an EventFilter must be a dict of keys to lists or nested dicts, "
            f"got {_show(filter)}"
        )
    for key, pattern in filter.items():
        if not isinstance(key, str):
            raise EventFilterError(f"{where}: filter keys must be strings, got {_show(key)}")
        path = _child(where, key)
        if isinstance(pattern, dict):
            validate_event_filter(pattern, where=path)
        elif isinstance(pattern, list):
            _validate_list(pattern, path, _EVENT_LIST)
        elif key in _OPERATORS:
            raise EventFilterError(
                f"{path}: an operator goes in a list of content filters: write "
                f"[{{{key!r}: {_show(pattern)}}}] in place of {{{key!r}: {_show(pattern)}}}"
            )
        else:
            raise EventFilterError(
                f"{path}: expected a list or a nested dict, got {_show(pattern)}; "
                f"to match this value write [{_show(pattern)}]"
            )


def _validate_list(pattern: list[Any], path: str, rules: _ListRules) -> None:
    def kind(item: Any) -> str | None:
        if isinstance(item, dict):
            return "object"
        found = _kind(item)
        return found if found in rules.literal_kinds else None

    if not pattern:
        return
    first = kind(pattern[0])
    for index, item in enumerate(pattern):
        item_path = f"{path}[{index}]"
        if first is None or kind(item) != first:
            raise EventFilterError(
                f"{item_path}: {_show(item)} does not belong in this list; "
                f"a list holds {rules.allowed}"
            )
        if first == "object":
            _validate_content_filter(item, item_path, rules.operators)


def _validate_content_filter(
    content_filter: dict[Any, Any], path: str, operators: tuple[str, ...]
) -> None:
    known = ", ".join(operators)
    if not content_filter:
        raise EventFilterError(f"{path}: an empty content filter; give one or more of {known}")
    for op, operand in content_filter.items():
        if op not in operators:
            hint = (
                ""
                if isinstance(op, str) and op.startswith("$")
                else " (to filter a nested key, put a dict in place of the list)"
            )
            raise EventFilterError(
                f"{path}: unknown operator {_show(op)}; use one of {known}{hint}"
            )
        rule = _OPERATORS[op]
        if not rule.operand_ok(operand):
            raise EventFilterError(f"{path}: {op} needs {rule.operand}, got {_show(operand)}")


_RESPONSE_FILTER_KEYS: Final = ("status", "headers", "body")


def validate_response_filter(response_filter: Any, *, where: str = "response_filter") -> None:
    """Raise `EventFilterError` unless ``response_filter`` is well formed (SPEC §6.6).

    Allowed keys: ``status`` (a non-empty list of HTTP status codes), ``headers`` (a dict of
    header name to a list of strings or of content filters) and ``body`` (an EventFilter). The
    message starts with the path to the bad part, rooted at ``where``.
    """
    if not isinstance(response_filter, dict):
        raise EventFilterError(
            f"{where}: a response filter must be a dict with any of status, headers, body; "
            f"got {_show(response_filter)}"
        )
    for key in response_filter:
        if key not in _RESPONSE_FILTER_KEYS:
            raise EventFilterError(
                f"{where}: unknown key {_show(key)}; a response filter has only status, headers "
                "and body"
            )
    if "status" in response_filter:
        _validate_status(response_filter["status"], f"{where}.status")
    if "headers" in response_filter:
        _validate_headers(response_filter["headers"], f"{where}.headers")
    if "body" in response_filter:
        validate_event_filter(response_filter["body"], where=f"{where}.body")


def _validate_status(status: Any, path: str) -> None:
    if not isinstance(status, list) or not status:
        raise EventFilterError(
            f"{path}: needs a non-empty list of HTTP status codes such as [200, 201], "
            f"got {_show(status)}; leave status out to accept any status"
        )
    for index, code in enumerate(status):
        if not (_is_number(code) and isinstance(code, int) and 100 <= code <= 599):
            raise EventFilterError(
                f"{path}[{index}]: needs an int HTTP status code (100-599), got {_show(code)}"
            )


def _validate_headers(headers: Any, path: str) -> None:
    if not isinstance(headers, dict):
        raise EventFilterError(
            f"{path}: needs a dict of header name to a list of strings or content filters, "
            f"got {_show(headers)}"
        )
    for name, match in headers.items():
        if not isinstance(name, str):
            raise EventFilterError(f"{path}: header names must be strings, got {_show(name)}")
        header_path = _child(path, name)
        if not isinstance(match, list):
            raise EventFilterError(
                f"{header_path}: needs a list holding {_HEADER_LIST.allowed}; got {_show(match)}"
            )
        _validate_list(match, header_path, _HEADER_LIST)
