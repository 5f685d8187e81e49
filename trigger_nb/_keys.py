"""Identities: idempotency keys (v2's derivation), task ids, run ids, job slugs and versions.

Everything here is a pure function of its arguments, so a key computed in one process, kernel or
week equals the key computed in another: that is what lets a replay find a task's stored result.

``idempotency_key`` reproduces v2's ``generateIdempotencyKey`` exactly (v2 §2.2)::

    sha256hex([runId, parentId ?? "", cacheKey].flat()
              .map(k => typeof k === "string" ? k : stableStringify(k)).join(":"))

including its collisions (``"a:b"`` ≡ ``["a", "b"]``; ``1`` ≡ ``"1"`` as a list element), which
users of v2 may rely on. ``stable_stringify`` is JavaScript's ``JSON.stringify`` of the value with
object keys sorted, down to how JS prints numbers and orders integer-like keys.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from typing import Any

from ._exceptions import ConfigError, PayloadError
from ._serde import json_tree

# --------------------------------------------------------------------------------------------
# stable_stringify: JSON.stringify with sorted keys, as JavaScript prints it
# --------------------------------------------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")
_ARRAY_INDEX = re.compile("0|[1-9][0-9]*")
_MAX_ARRAY_INDEX = 2**32 - 2


def _js_string(s: str) -> str:
    out = json.dumps(s, ensure_ascii=False)
    # JSON.stringify escapes lone surrogates (ES2019 well-formed stringify); json.dumps with
    # ensure_ascii=False would leave them raw, and raw they cannot even be UTF-8 encoded.
    if _SURROGATE.search(out):
        out = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", out)
    return out


def _js_number(x: float) -> str:
    """``String(x)`` in JavaScript (Number::toString): ``1.0`` → ``1``, ``1e21`` → ``1e+21``."""
    if x == 0:
        return "0"  # also -0, as in JS
    # repr gives the shortest digits that round-trip, as JS does; only the layout differs.
    mantissa, _, exp = repr(abs(x)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    stripped = digits.rstrip("0")
    k = len(stripped)
    n = k + int(exp or 0) - len(frac_part) + (len(digits) - k)  # value = 0.<digits> × 10**n
    if k <= n <= 21:
        text = stripped + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{stripped[:n]}.{stripped[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * -n + stripped
    else:
        e = n - 1
        head = stripped if k == 1 else f"{stripped[0]}.{stripped[1:]}"
        text = f"{head}e{'+' if e >= 0 else '-'}{abs(e)}"
    return "-" + text if x < 0 else text


def _js_key(key: Any) -> str:
    """A Python dict key as the string key JavaScript would give it (``String(key)``)."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool):
        return {None: "null", True: "true", False: "false"}[key]
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float):
        if math.isnan(key):
            return "NaN"
        if math.isinf(key):
            return "Infinity" if key > 0 else "-Infinity"
        return _js_number(key)
    raise ConfigError(
        f"A cache key contains a dict key of type {type(key).__name__} ({key!r}): use str keys."
    )


def _js_key_order(keys: list[str]) -> list[str]:
    # v2 sorts the keys (`.sort()`: UTF-16 code unit order) into a new object, but JS objects
    # enumerate integer-like keys first, in numeric order: JSON.stringify prints that order.
    index = [k for k in keys if _ARRAY_INDEX.fullmatch(k) and int(k) <= _MAX_ARRAY_INDEX]
    rest = [k for k in keys if not (_ARRAY_INDEX.fullmatch(k) and int(k) <= _MAX_ARRAY_INDEX)]
    index.sort(key=int)
    rest.sort(key=lambda k: k.encode("utf-16-be", "surrogatepass"))
    return index + rest


def _stringify(value: Any, active: set[int]) -> str:
    if isinstance(value, str):
        return _js_string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)  # exact; JS would lose precision beyond 2**53
    if isinstance(value, float):
        return _js_number(value) if math.isfinite(value) else "null"
    if isinstance(value, (list, tuple, dict)):
        if id(value) in active:
            raise ConfigError("A cache key contains a circular reference (a list in itself).")
        active.add(id(value))
        try:
            if isinstance(value, dict):
                by_key = {_js_key(k): v for k, v in value.items()}
                items = (
                    f"{_js_string(k)}:{_stringify(by_key[k], active)}"
                    for k in _js_key_order(list(by_key))
                )
                return "{" + ",".join(items) + "}"
            return "[" + ",".join(_stringify(item, active) for item in value) + "]"
        finally:
            active.discard(id(value))
    raise ConfigError(
        f"A cache key contains a value of type {type(value).__name__} ({value!r}), which has no "
        "stable JSON form: use str, int, float, bool, None, lists and dicts (for a date, "
        "use value.isoformat())."
    )


def stable_stringify(value: Any) -> str:
    """JavaScript ``JSON.stringify(value)`` with object keys sorted recursively (v2 §2.2).

    Compact, non-ASCII kept, integral floats printed as ints (``1.0`` → ``1``), NaN/±Infinity →
    ``null``, tuples as arrays, top-level ``None`` → ``"null"``. Raises ``ConfigError`` for a
    value with no JSON form (a set, a date, an object) or a circular one.
    """
    return _stringify(value, set())


# --------------------------------------------------------------------------------------------
# Idempotency keys and task ids
# --------------------------------------------------------------------------------------------


def _sha256_hex(text: str) -> str:
    try:
        data = text.encode()
    except UnicodeEncodeError:
        # Lone surrogates: encode as Node's Buffer.from(string) does (pairs joined, lone → U+FFFD)
        # rather than crash on the replay path.
        data = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()
    return hashlib.sha256(data).hexdigest()


def idempotency_key(run_id: str, parent_id: str | None, cache_key: Any) -> str:
    """The task's idempotency key: 64 hex chars, exactly v2's derivation (SPEC §4.1, v2 §2.2).

    ``cache_key`` is a string, or a list/tuple flattened one level into parts (a nested list is one
    stable-stringified part), or any other JSON value (one stable-stringified part). Top-level
    tasks pass ``parent_id=None``. Raises ``ConfigError`` if a part has no JSON form.
    """
    # Hot path (every task of every replay): all-string keys cost one join and one hash.
    if isinstance(cache_key, str):
        tail = cache_key
    elif isinstance(cache_key, (list, tuple)):
        if not cache_key:  # [].flat() adds no part, so no trailing ":" either
            return _sha256_hex(f"{run_id}:{parent_id or ''}")
        try:
            tail = ":".join(cache_key)
        except TypeError:
            tail = ":".join(p if isinstance(p, str) else stable_stringify(p) for p in cache_key)
    else:
        tail = stable_stringify(cache_key)
    return _sha256_hex(f"{run_id}:{parent_id or ''}:{tail}")


def display_key(cache_key: Any) -> str:
    """The cache key as shown to users: a string as is, a list joined with ``-`` (as in v2's
    duplicate-key message, v2 §2.3), other values stable-stringified."""
    if isinstance(cache_key, str):
        return cache_key
    if isinstance(cache_key, (list, tuple)):
        return "-".join(p if isinstance(p, str) else stable_stringify(p) for p in cache_key)
    return stable_stringify(cache_key)


def task_id_for(idempotency_key: str) -> str:
    """The task id: the first 24 hex chars (96 bits) of its idempotency key.

    v2's task id is a server ULID, and a child's key is scoped by its parent's *id* (v2 §2.2). We
    have no server handing out ids, and a parent's id must be the same in every execution and
    after a crash, even when the parent's row was never stored: so it is derived, not allocated.
    """
    return idempotency_key[:24]


# --------------------------------------------------------------------------------------------
# Jobs and runs
# --------------------------------------------------------------------------------------------

# JavaScript's \s, which differs from Python's (Python also counts \x1c-\x1f as whitespace).
_JS_WHITESPACE = re.compile(
    "[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+"
)
_NOT_URL_SAFE = re.compile(r"[^a-zA-Z0-9\-._~]")
_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")  # fullmatch: JS's ^\d+\.\d+\.\d+$ (ASCII digits)


def slugify_job_id(job_id: str) -> str:
    """v2's ``slugifyId`` (v2 §6.1): lowercase, whitespace runs → ``-``, then every character
    outside ``[a-z0-9-._~]`` removed. ``"My Job!"`` → ``"my-job"``.

    Raises ``ConfigError`` if nothing is left.
    """
    if not isinstance(job_id, str):
        raise ConfigError(f"A job id must be a string, not {type(job_id).__name__}.")
    slug = _NOT_URL_SAFE.sub("", _JS_WHITESPACE.sub("-", job_id.lower()))
    if not slug:
        raise ConfigError(
            f"Job id {job_id!r} is empty once slugified (only a-z, 0-9, '-', '.', '_' and '~' "
            "are kept; spaces become '-'). Use an id like 'my-job'."
        )
    return slug


def validate_version(version: str) -> str:
    """Return ``version`` if it matches ``^\\d+\\.\\d+\\.\\d+$`` (v2 §6.1), else raise
    ``ConfigError``."""
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise ConfigError(
            f"Job version must be three whole numbers separated by dots, like '0.0.1' or "
            f"'1.2.10', not {version!r}."
        )
    return version


def _payload_not_json(path: str, obj: Any, reason: str) -> Any:
    raise PayloadError(f"The payload is not JSON: {path} {reason}. A payload must be JSON data.")


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value``: keys sorted, compact, non-ASCII kept.

    Values equal as JSON get equal texts (tuples print as lists, dict keys as ``json.dumps``
    converts them). Raises ``PayloadError`` naming the path and type of the first value that is
    not JSON (a set, a date, an object, NaN, a circular reference).
    """
    # Always walk, instead of trusting json.dumps(sort_keys=True): it sorts int keys as numbers,
    # so {10: a, 9: b} and its own JSON round trip {"10": a, "9": b} would get different texts.
    try:
        tree = json_tree(
            value, root="payload", dates=False, nan_to_null=False, on_bad=_payload_not_json
        )
    except RecursionError:
        raise PayloadError("The payload is nested too deeply to encode as JSON.") from None
    try:
        return json.dumps(tree, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except ValueError as exc:  # an int over Python's int-to-str digit limit
        raise PayloadError(f"The payload cannot be encoded as JSON: {exc}") from None


def derive_run_id(job_id: str, payload: Any) -> str:
    """The default run id of ``job_id`` with ``payload`` (SPEC §2 "Run identity").

    Re-executing a cell with the same payload continues the same run. Raises ``PayloadError`` if
    the payload is not JSON.
    """
    material = f"{job_id}\n{canonical_json(payload)}"
    return "run_" + hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def new_run_id() -> str:
    """A fresh random run id (``--new``), shaped like a derived one."""
    return "run_" + secrets.token_hex(12)


__all__ = [
    "canonical_json",
    "derive_run_id",
    "display_key",
    "idempotency_key",
    "new_run_id",
    "slugify_job_id",
    "stable_stringify",
    "task_id_for",
    "validate_version",
]
