"""How task outputs and errors become stored data, and back.

Theory of operation:

- Every task output is JSON round-tripped, on the first execution too, so user code sees the same
  value whether the task ran or was replayed (SPEC §4.5, v2 §2.8 "from 2.2.5 on"). The
  caller hands ``EncodedOutput.value`` back to user code, never the original object.
- The common case (a small JSON value) costs one C ``json.dumps`` with a ``default=`` hook and one
  ``json.loads``. Only after ``json.dumps`` fails do we walk the value (``json_tree``): to turn
  NaN/Infinity into ``null`` as JavaScript did, or to find the *path* of the offending value so
  the error message can point at it.
- Pickle is opt-in (``serializer="pickle"``) and only a fallback: JSON values stay JSON in the store
  even then, so a store stays readable without unpickling anything it does not have to.
- ``error_record`` turns an exception into v2's ``{name, message, stack}`` record with only the
  user's own frames in ``stack``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import json.scanner
import math
import os
import pickle
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from ._exceptions import ConfigError, StoreError, TaskOutputError
from ._numbers import epoch

DEFAULT_OUTPUT_LIMIT = 64 * 1024 * 1024
"""Default maximum size of one encoded task output, in bytes (SPEC §4.5: 64 MiB)."""

Encoding = Literal["json", "pickle"]

_SERIALIZERS = ("json", "pickle")
_JSON_HINT = (
    "Return JSON data (dict, list, str, int, float, bool, None; dates become ISO strings), "
    'or store this output with pickle: run_task(..., serializer="pickle") for one task, '
    "%%job --pickle for a whole job."
)


@dataclass(frozen=True, slots=True)
class EncodedOutput:
    """A task output ready for the store.

    ``data`` is what to store (``str`` for json, ``bytes`` for pickle); ``value`` is what to hand
    to user code: the decoded ``data``, so a fresh execution and a replay see equal values.
    """

    encoding: Encoding
    data: str | bytes
    value: Any


# --------------------------------------------------------------------------------------------
# The walker: JSON rules in Python, with the path of whatever breaks them
# --------------------------------------------------------------------------------------------

OnBad = Callable[[str, Any, str], Any]
"""``on_bad(path, obj, reason)``: raise, or return a JSON-safe replacement for ``obj``."""

# A path is a linked list of segments, rendered only when a message needs it: canonical_json and
# jsonable_for_display walk every node, and formatting every node's path would dominate the cost.
# A segment is a list index (int) or a dict key (str).
_Path = tuple[Any, "int | str"] | str


def _render_path(path: _Path) -> str:
    segments: list[str] = []
    while isinstance(path, tuple):
        path, segment = path
        if isinstance(segment, int):
            segments.append(f"[{segment}]")
        else:
            segments.append(f"[{json.dumps(segment, ensure_ascii=False)}]")
    return path + "".join(reversed(segments))


def _type_name(obj: Any) -> str:
    cls = type(obj)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _safe_repr(obj: Any) -> str:
    try:
        return repr(obj)
    except Exception:  # a broken __repr__ must not break a display
        return f"<{_type_name(obj)} object>"


def _json_key(key: Any) -> str | None:
    """A dict key as ``json.dumps`` converts it, or ``None`` if JSON has no string for it."""
    if isinstance(key, str):
        return key
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float):
        if math.isnan(key):
            return "NaN"
        if math.isinf(key):
            return "Infinity" if key > 0 else "-Infinity"
        return float.__repr__(key)
    return None


def json_tree(
    value: Any,
    *,
    root: str,
    dates: bool,
    nan_to_null: bool,
    on_bad: OnBad,
) -> Any:
    """Return ``value`` as plain JSON data: dicts with ``str`` keys, lists, str, int, float, bool,
    None.

    Tuples become lists and dict keys are converted as ``json.dumps`` converts them. With
    ``dates``, ``datetime``/``date``/``time`` become ISO strings (v2 §2.8); with ``nan_to_null``,
    NaN and ±Infinity become ``None`` (JavaScript's ``JSON.stringify``). Anything else, a
    circular reference, or (without ``nan_to_null``) a non-finite float is passed to
    ``on_bad(path, obj, reason)`` with ``path`` like ``output["rows"][3]`` (``root`` first); its
    return value replaces ``obj`` unless it raises.
    """
    active: set[int] = set()

    def bad(path: _Path, obj: Any, reason: str) -> Any:
        return on_bad(_render_path(path), obj, reason)

    def walk(v: Any, path: _Path) -> Any:
        t = type(v)
        if t is str or t is int or t is bool or v is None:
            return v
        if isinstance(v, float):
            if math.isfinite(v):
                return v
            if nan_to_null:
                return None
            return bad(path, v, f"is {v!r}, which JSON cannot represent")
        if isinstance(v, (str, int)):
            return v
        if isinstance(v, (dict, list, tuple)):
            if id(v) in active:
                return bad(path, v, "is a circular reference (it contains itself)")
            active.add(id(v))
            try:
                if isinstance(v, dict):
                    out: dict[str, Any] = {}
                    for k, item in v.items():
                        key = _json_key(k)
                        if key is None:
                            reason = f"has a dict key of type {_type_name(k)}: {_safe_repr(k)}"
                            key = str(bad(path, k, reason))
                        out[key] = walk(item, (path, key))
                    return out
                return [walk(item, (path, i)) for i, item in enumerate(v)]
            finally:
                active.discard(id(v))
        if dates and isinstance(v, (_dt.date, _dt.time)):
            return v.isoformat()
        return bad(path, v, f"has type {_type_name(v)}")

    return walk(value, root)


#: The deepest nesting of JSON containers accepted from outside (callback bodies). Python's
#: json encodes and decodes recursively: a value much deeper than this may be received on a
#: shallow stack and then fail to be stored, or replayed in a kernel's deeper one.
MAX_JSON_DEPTH = 500


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """True if JSON data ``value`` nests dicts/lists more than ``limit`` levels (iterative:
    safe on any depth)."""
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def jsonable_for_display(value: Any) -> Any:
    """Return ``value`` as JSON data for display (params, properties, log records).

    Never raises: whatever JSON cannot hold is replaced by its ``repr``; dates become ISO strings
    and NaN/Infinity ``None`` as in outputs.
    """
    return json_tree(
        value,
        root="value",
        dates=True,
        nan_to_null=True,
        on_bad=lambda _path, obj, _reason: _safe_repr(obj),
    )


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


class _NotJson(Exception):
    """Private signal from the walker to ``encode_output``: the value has no JSON form."""

    def __init__(self, path: str, obj: Any, reason: str) -> None:
        super().__init__(f"{path} {reason}")
        self.path = path
        self.obj = obj


def _raise_not_json(path: str, obj: Any, reason: str) -> Any:
    raise _NotJson(path, obj, reason)


def _json_default(obj: Any) -> Any:
    # Only called by json.dumps for types it does not know: v2 stored Date as its ISO string.
    if isinstance(obj, (_dt.date, _dt.time)):
        return obj.isoformat()
    raise TypeError(f"Object of type {_type_name(obj)} is not JSON serializable")


# ensure_ascii (the default) keeps `data` pure ASCII: its len() is its size in bytes, and a
# lone surrogate in a string cannot make the store's UTF-8 encoding fail later. One encoder for
# every call (as json.dumps keeps one for its defaults): building it costs as much as encoding
# a small output, once per task.
_dumps = json.JSONEncoder(default=_json_default, allow_nan=False, separators=(",", ":")).encode


def _dumps_after_failure(value: Any) -> str:
    """Second chance after ``_dumps`` failed: sanitise NaN/Infinity, or raise ``_NotJson``."""
    try:
        tree = json_tree(value, root="output", dates=True, nan_to_null=True, on_bad=_raise_not_json)
    except RecursionError:
        raise _NotJson("output", value, "is nested too deeply to encode") from None
    try:
        return _dumps(tree)
    except (TypeError, ValueError, RecursionError) as exc:  # e.g. an int over sys int-digit limit
        raise _NotJson("output", value, f"cannot be encoded as JSON ({exc})") from None


def _task_label(cache_key: str) -> str:
    return f"Task {cache_key!r}" if cache_key else "The task"


def _check_size(size: int, limit: int, encoding: str, cache_key: str) -> None:
    if size > limit:
        raise TaskOutputError(
            f"{_task_label(cache_key)} returned an output of {size:,} bytes ({encoding}), over "
            f"the limit of {limit:,} bytes ({limit / 1024 / 1024:g} MiB). Return less data "
            "(for example write it to a file and return the path), or raise the limit: "
            "TriggerClient(output_limit=...)."
        )


# json.loads of these returns an equal object: skip the decode for the commonest small outputs.
_ROUND_TRIP_SAFE = (str, int, bool, type(None))
# What JSONDecoder.decode calls (typeshed types make_scanner's argument oddly).
_scan_once = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def loads_json(text: str) -> Any:
    """``json.loads(text)``, faster for the compact text ``encode_output`` writes: the decoder's
    C scanner called directly (``json.loads``'s own wrapping costs twice what decoding a small
    output does: 1.3 against 0.4 µs, once per replayed task). Text with whitespace around the
    value, or that is not JSON, goes to ``json.loads``, which decides."""
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def encode_output(
    value: Any,
    *,
    serializer: str = "json",
    limit: int = DEFAULT_OUTPUT_LIMIT,
    cache_key: str = "",
) -> EncodedOutput:
    """Encode a task's output for the store (SPEC §4.5, v2 §2.8).

    JSON rules: dates become ISO strings, tuples lists, NaN/Infinity ``null``; ``None`` is a legal
    output. With ``serializer="pickle"`` a value with no JSON form is pickled instead (JSON values
    stay JSON). ``limit`` bounds the encoded size in bytes. ``cache_key`` only names the task in
    messages.

    Raises ``ConfigError`` for an unknown ``serializer`` and ``TaskOutputError`` (naming the task,
    the offending type and its path inside the value) when the output cannot be stored or is too
    big.
    """
    if serializer not in _SERIALIZERS:
        raise ConfigError(f'serializer must be "json" or "pickle", not {serializer!r}.')
    try:
        data = _dumps(value)
    except (TypeError, ValueError, RecursionError):
        try:
            data = _dumps_after_failure(value)
        except _NotJson as not_json:
            if serializer == "pickle":
                return _encode_pickle(value, limit=limit, cache_key=cache_key, why=str(not_json))
            raise TaskOutputError(
                f"{_task_label(cache_key)} returned a value that cannot be stored as JSON: "
                f"{not_json}. {_JSON_HINT}"
            ) from None
    _check_size(len(data), limit, "json", cache_key)
    if type(value) in _ROUND_TRIP_SAFE:
        return EncodedOutput("json", data, value)
    return EncodedOutput("json", data, loads_json(data))


def encode_large_string(
    value: str, *, limit: int = DEFAULT_OUTPUT_LIMIT, cache_key: str = "", chunk: int = 1 << 20
) -> tuple[int, Callable[[], Iterator[bytes]]]:
    """A str output's JSON encoding as ``(size in bytes, chunks)``, never built whole.

    ``chunks()`` yields the ASCII bytes of ``json.dumps(value)`` ``chunk`` characters of the
    value at a time (escaping is per code point, so any split is exact): storing a 100 MiB
    string costs the string plus a chunk (SPEC §13). The size is counted the same way, first,
    so the limit is checked before anything is stored. A str round-trips JSON unchanged, so
    user code keeps ``value`` itself. Raises ``TaskOutputError`` over ``limit``.
    """

    def pieces() -> Iterator[str]:
        for start in range(0, len(value), chunk):
            yield json.dumps(value[start : start + chunk])[1:-1]

    size = 2 + sum(len(piece) for piece in pieces())
    _check_size(size, limit, "json", cache_key)

    def chunks() -> Iterator[bytes]:
        yield b'"'
        for piece in pieces():
            yield piece.encode("ascii")
        yield b'"'

    return size, chunks


def _encode_pickle(value: Any, *, limit: int, cache_key: str, why: str) -> EncodedOutput:
    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # pickle raises PicklingError, TypeError, AttributeError, ...
        raise TaskOutputError(
            f"{_task_label(cache_key)} returned a value that cannot be stored: it is not JSON "
            f"({why}) and pickling it failed ({type(exc).__name__}: {exc}). Return plain data "
            "instead (for example the parts of the object you need)."
        ) from exc
    _check_size(len(data), limit, "pickle", cache_key)
    # Hand user code the unpickled copy, as a replay would: mutations of the original object
    # after the task returned must not differ between a fresh execution and a replay.
    return EncodedOutput("pickle", data, pickle.loads(data))


def decode_output(encoding: str, data: str | bytes | None) -> Any:
    """Decode stored output ``data`` written by ``encode_output`` (``None`` data → ``None``).

    Raises ``StoreError`` for an encoding this version does not know.
    """
    if data is None:
        return None
    if encoding == "json":
        return loads_json(data) if isinstance(data, str) else json.loads(data)
    if encoding == "pickle":
        if isinstance(data, str):
            raise StoreError("A pickled task output was stored as text: the store is corrupt.")
        return pickle.loads(data)
    raise StoreError(
        f"Unknown output encoding {encoding!r} in the store: it was written by another version "
        "of trigger_nb, or is corrupt."
    )


# --------------------------------------------------------------------------------------------
# Error records
# --------------------------------------------------------------------------------------------

_PACKAGE_DIR = os.path.dirname(os.path.realpath(__file__)) + os.sep
_STDLIB_DIR = os.path.dirname(os.path.realpath(os.__file__))
# Frames the user did not write: ours, and the stdlib machinery that runs callbacks (an event
# loop step, an executor worker thread) between our frames and theirs.
_HIDDEN_DIRS = (
    _PACKAGE_DIR,
    os.path.join(_STDLIB_DIR, "asyncio") + os.sep,
    os.path.join(_STDLIB_DIR, "concurrent", "futures") + os.sep,
)
_HIDDEN_FILES = (os.path.join(_STDLIB_DIR, "threading.py"),)


@functools.lru_cache(maxsize=1024)
def _is_hidden(filename: str) -> bool:
    path = os.path.realpath(filename)
    return path.startswith(_HIDDEN_DIRS) or path in _HIDDEN_FILES


def _keep_user_frames(te: traceback.TracebackException, seen: set[int]) -> None:
    if id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list(
        [frame for frame in te.stack if not _is_hidden(frame.filename)]
    )
    linked = [te.__cause__, te.__context__, *(getattr(te, "exceptions", None) or [])]
    for other in linked:
        if other is not None:
            _keep_user_frames(other, seen)


def error_record(exc: BaseException, *, user_frames_only: bool = True) -> dict[str, str]:
    """Return v2's error record ``{"name", "message", "stack"}`` for ``exc``.

    ``stack`` is the formatted traceback (with chained exceptions), ending with the
    ``Name: message`` line. With ``user_frames_only`` it leaves out frames inside trigger_nb and
    inside the asyncio / concurrent.futures / threading machinery, so the user sees their own
    lines (SPEC §2 "the user's own traceback lines"); if no frame is left, ``stack`` is just the
    ``Name: message`` line.
    """
    te = traceback.TracebackException.from_exception(exc)
    if user_frames_only:
        _keep_user_frames(te, set())
    return {"name": type(exc).__name__, "message": str(exc), "stack": "".join(te.format())}


# -- times ---------------------------------------------------------------------------------


def iso(ts: float | None) -> str | None:
    """Epoch seconds → ISO 8601 UTC (what records show users)."""
    return None if ts is None else _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat()


def epoch_seconds(when: Any, what: str, *, error: type[Exception] = ConfigError) -> float | None:
    """A ``datetime`` (naive = local time) or epoch seconds → epoch seconds; ``None`` stays
    ``None``. Raises ``error`` naming ``what`` for anything else, and for NaN, infinities and
    dates outside years 1–9999 (SPEC §10: they never reach the store)."""
    return None if when is None else epoch(when, what, error=error)


__all__ = [
    "epoch_seconds",
    "iso",
    "DEFAULT_OUTPUT_LIMIT",
    "EncodedOutput",
    "decode_output",
    "encode_output",
    "error_record",
    "json_tree",
    "jsonable_for_display",
]
