"""Fingerprints of task functions' code, for changed-code detection (SPEC §2 "Changed code").

A task record stores the fingerprint of the function that produced it (``code_fingerprint``).
When an execution replays the task with a function whose fingerprint differs, the task is
marked *code changed* (and run again with ``rerun_changed``). What counts:

- the **source text** of the function, when ``inspect`` can find it (a notebook cell, a module):
  for a ``def`` its whole block (nested defs and lambdas included); for a ``lambda`` only the
  lambda expression itself, found in the parsed source by its line and argument names — so
  editing another argument of the same call (``name=``, ``retry=``) changes nothing;
- otherwise (no source, or several identical-looking lambdas on one line) the **code object**:
  bytecode, constants (nested code objects recursively), names and argument names.

Never part of it: closure cell values and globals the function reads (the values a task
works on are its inputs, not its code), default argument *values* unless they are in the
source, and functions the task calls (only the task's own function is compared). The
fingerprint of a wrapper (``functools.wraps``, ``partial``, a bound method, a callable
object) is the fingerprint of the function it wraps.

Cost (SPEC §13): computed once per code object and cached, so a task in a loop, or replayed
again and again, pays one dictionary lookup.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import re
import threading
from collections.abc import Callable
from types import CodeType
from typing import Any

#: Field of a task record holding the fingerprint of the code that produced its output.
FIELD = "code_fingerprint"
#: A wrapper that calls the user's function with other arguments (an integration's call) names
#: that function in this attribute: its code is the task's. (Not ``__wrapped__``, which would
#: also change what ``inspect.signature`` — and so the engine's calling convention — sees.)
WRAPS = "__trigger_nb_fn__"

_CACHE_LIMIT = 4096
_cache: dict[int, tuple[CodeType, str | None]] = {}  # id(code) -> (code kept alive, fingerprint)
_parsed_lock = threading.Lock()
_parsed: dict[str, tuple[str, ast.Module | None]] = {}  # filename -> (its text, its tree)
_MAGIC_LINE = re.compile(r"^[ \t]*[%!]")


def code_of(fn: Callable[..., Any] | None) -> CodeType | None:
    """The code object that identifies ``fn``, looking through wrappers; ``None`` if it has
    none (a builtin, a C function)."""
    seen = 0
    while fn is not None and seen < 20:  # bounded: a wrapper cycle must not hang a task
        seen += 1
        # The wrapped function first: a decorator's own code is not the task's.
        inner = getattr(fn, WRAPS, None) or getattr(fn, "__wrapped__", None)
        if inner is not None:
            fn = inner
            continue
        code = getattr(fn, "__code__", None)
        if isinstance(code, CodeType):
            return code
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif getattr(fn, "__func__", None) is not None:  # a bound or class method
            fn = getattr(fn, "__func__")  # noqa: B009 - typed callables lack it
        elif not inspect.isroutine(fn) and callable(fn):
            fn = type(fn).__call__
        else:
            return None
    return None


def fingerprint(fn: Callable[..., Any] | None) -> str | None:
    """A short hex fingerprint of ``fn``'s code (see the module docstring), or ``None`` when
    ``fn`` has no Python code. Equal code gives an equal fingerprint in every process."""
    code = code_of(fn)
    if code is None:
        return None
    cached = _cache.get(id(code))
    if cached is not None and cached[0] is code:
        return cached[1]
    text = _source(code)
    digest = hashlib.blake2b(digest_size=8)
    if text is not None:
        digest.update(b"source\0" + text.encode("utf-8", "surrogatepass"))
    else:
        digest.update(b"code\0")
        _hash_code(code, digest)
    value = digest.hexdigest()
    if len(_cache) >= _CACHE_LIMIT:  # a long session compiles many cells: start over
        _cache.clear()
    _cache[id(code)] = (code, value)
    return value


def code_changed(record: dict[str, Any], fn: Callable[..., Any] | None) -> bool:
    """Whether ``fn`` differs from the code that produced ``record``'s stored output. A record
    without a fingerprint (a library task, or stored by an older version) never differs."""
    stored = record.get(FIELD)
    if stored is None:
        return False
    current = fingerprint(fn)
    return current is not None and current != stored


# -- source text --------------------------------------------------------------------------------
def _source(code: CodeType) -> str | None:
    try:
        if code.co_name == "<lambda>":
            return _lambda_source(code)
        return inspect.getsource(code)
    except (OSError, TypeError, SyntaxError, ValueError, IndexError):
        return None


def _lambda_source(code: CodeType) -> str | None:
    """The text of exactly this lambda expression, or ``None`` if it cannot be told apart."""
    lines, _ = inspect.findsource(code)
    tree = _parse(code.co_filename, "".join(lines))
    if tree is None:
        return None
    wanted = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    found = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Lambda)
        and node.lineno == code.co_firstlineno
        and tuple(a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)) == wanted
    ]
    if len(found) != 1:
        return None  # several look-alikes on one line: the code object tells them apart
    return ast.get_source_segment("".join(lines), found[0])


def _parse(filename: str, text: str) -> ast.Module | None:
    """The parsed text of a file or cell, cached per filename while its text is unchanged.
    IPython lines (``%%job ...``, ``!cmd``) are blanked, keeping line numbers."""
    with _parsed_lock:
        cached = _parsed.get(filename)
        if cached is not None and cached[0] == text:
            return cached[1]
    cleaned = "".join(
        "\n" if _MAGIC_LINE.match(line) else line for line in text.splitlines(keepends=True)
    )
    try:
        tree: ast.Module | None = ast.parse(cleaned)
    except (SyntaxError, ValueError):
        tree = None
    with _parsed_lock:
        if len(_parsed) >= 64:
            _parsed.clear()
        _parsed[filename] = (text, tree)
    return tree


# -- code objects -------------------------------------------------------------------------------
def _hash_code(code: CodeType, digest: Any) -> None:
    digest.update(code.co_code)
    digest.update(repr((code.co_names, code.co_varnames, code.co_argcount, code.co_kwonlyargcount)).encode())
    for const in code.co_consts:
        if isinstance(const, CodeType):
            digest.update(b"\0nested\0")
            _hash_code(const, digest)
        else:
            digest.update(_const_repr(const).encode("utf-8", "surrogatepass"))


def _const_repr(value: Any) -> str:
    """A repr that is the same in every process (a frozenset's order follows string hashing,
    which is randomised per process)."""
    if isinstance(value, frozenset):
        return "frozenset(" + ",".join(sorted(_const_repr(v) for v in value)) + ")"
    if isinstance(value, tuple):
        return "(" + ",".join(_const_repr(v) for v in value) + ")"
    return f"{type(value).__name__}:{value!r}"
