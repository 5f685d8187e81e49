"""Fingerprints of task functions (SPEC §2 "Changed code"): what changes them and what does not."""

from __future__ import annotations

import functools
import linecache
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

from trigger_nb._engine._fingerprint import WRAPS, code_changed, code_of, fingerprint

_cells = 0


def cell(source: str, **namespace: Any) -> dict[str, Any]:
    """Execute ``source`` as a notebook cell would be: compiled under its own file name, with
    its text in ``linecache`` (where IPython puts every cell), so ``inspect`` finds the source."""
    global _cells
    _cells += 1
    filename = f"<test-cell-{_cells}>"
    source = textwrap.dedent(source)
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), namespace)
    return namespace


def fn_of(source: str, name: str = "f", **namespace: Any) -> Callable[..., Any]:
    fn: Callable[..., Any] = cell(source, **namespace)[name]
    return fn


def test_same_code_in_another_cell_has_the_same_fingerprint() -> None:
    # Re-executing a cell compiles new code objects: the fingerprint must not depend on them,
    # nor on the line the function is on.
    a = fn_of("f = lambda task: task * 2\n")
    b = fn_of("\n\n# moved down\nf = lambda task: task * 2\n")
    assert a.__code__ is not b.__code__
    assert fingerprint(a) == fingerprint(b) is not None


def test_editing_a_lambda_changes_its_fingerprint() -> None:
    assert fingerprint(fn_of("f = lambda: 1 + 1\n")) != fingerprint(fn_of("f = lambda: 1 + 2\n"))


def test_only_the_lambda_counts_not_the_rest_of_its_call() -> None:
    # Another argument of the same call (the task's name, its key) is not the task's code.
    source = 'f = (lambda key, fn, name: fn)("k", lambda task: task + 1, name="{}")\n'
    assert fingerprint(fn_of(source.format("One"))) == fingerprint(fn_of(source.format("Two")))
    multi_line = 'f = (lambda key, fn, **o: fn)(\n    "k",\n    lambda: 41 + {},\n    retry={{"limit": {}}},\n)\n'
    assert fingerprint(fn_of(multi_line.format(1, 3))) == fingerprint(fn_of(multi_line.format(1, 5)))
    assert fingerprint(fn_of(multi_line.format(1, 3))) != fingerprint(fn_of(multi_line.format(2, 3)))


def test_two_lambdas_on_one_line_are_told_apart() -> None:
    ns = cell("g = lambda: 1; h = lambda: 2\n")
    assert fingerprint(ns["g"]) != fingerprint(ns["h"])
    edited = cell("g = lambda: 1; h = lambda: 3\n")
    assert fingerprint(edited["g"]) == fingerprint(ns["g"])
    assert fingerprint(edited["h"]) != fingerprint(ns["h"])


def test_a_def_includes_its_nested_defs_and_lambdas() -> None:
    source = """
    def f(task):
        def inner(x):
            return x + {inner}
        return list(map(lambda y: inner(y) * {lam}, [1, 2]))
    """
    base = fingerprint(fn_of(source.format(inner=1, lam=2)))
    assert fingerprint(fn_of(source.format(inner=1, lam=2))) == base
    assert fingerprint(fn_of(source.format(inner=9, lam=2))) != base
    assert fingerprint(fn_of(source.format(inner=1, lam=9))) != base


def test_closure_values_and_globals_are_not_part_of_it() -> None:
    make = fn_of("def make(factor):\n    return lambda x: x * factor\n", name="make")
    assert fingerprint(make(2)) == fingerprint(make(3))
    assert fingerprint(fn_of("f = lambda: LIMIT\n", LIMIT=1)) == fingerprint(fn_of("f = lambda: LIMIT\n", LIMIT=2))


def test_without_source_the_code_object_counts() -> None:
    def compiled(body: str) -> Callable[..., Any]:
        ns: dict[str, Any] = {}
        exec(compile(f"def f(task):\n    {body}\n", "<nowhere>", "exec"), ns)  # not in linecache
        fn: Callable[..., Any] = ns["f"]
        return fn

    assert fingerprint(compiled("return [1, (2, 3)]")) == fingerprint(compiled("return [1, (2, 3)]"))
    assert fingerprint(compiled("return 1")) != fingerprint(compiled("return 2"))  # constants
    assert fingerprint(compiled("return task.a")) != fingerprint(compiled("return task.b"))  # names
    assert fingerprint(compiled("return task + 1")) != fingerprint(compiled("return task - 1"))  # bytecode
    nested = "return (lambda: {})()"
    assert fingerprint(compiled(nested.format(1))) != fingerprint(compiled(nested.format(2)))


def test_the_code_object_fingerprint_is_the_same_in_every_process() -> None:
    # A frozenset constant's order follows string hashing, randomised per process.
    program = (
        "from trigger_nb._engine._fingerprint import fingerprint\n"
        "ns = {}\n"
        "exec(compile('def f(x):\\n    return x in {\"alpha\", \"beta\", \"gamma\", \"delta\"}\\n', '<n>', 'exec'), ns)\n"
        "print(fingerprint(ns['f']))\n"
    )
    prints = {
        subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""}, cwd=None,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert len(prints) == 1 and len(next(iter(prints))) == 16


def test_wrappers_count_as_the_function_they_wrap() -> None:
    f = fn_of("def f(task, n=1):\n    return task * n\n")

    @functools.wraps(f)
    def decorated(*args: Any) -> Any:
        return f(*args)

    class Api:
        def call(self, task: Any) -> Any:
            return task

        def __call__(self, task: Any) -> Any:
            return task

    def integration_call(task: Any, io: Any) -> Any:
        return f(task)

    setattr(integration_call, WRAPS, f)
    assert fingerprint(decorated) == fingerprint(functools.partial(f, n=2)) == fingerprint(f)
    assert fingerprint(integration_call) == fingerprint(f)
    assert code_of(Api().call) is Api.call.__code__
    assert code_of(Api()) is Api.__call__.__code__
    assert fingerprint(len) is None and fingerprint(None) is None


def test_code_changed_compares_with_the_stored_fingerprint() -> None:
    old, new = fn_of("f = lambda: 1\n"), fn_of("f = lambda: 2\n")
    record = {"code_fingerprint": fingerprint(old)}
    assert not code_changed(record, old)
    assert code_changed(record, new)
    assert not code_changed({}, new)  # stored without a fingerprint: unknown, never "changed"
    assert not code_changed(record, len)  # no Python code now: unknown too


def test_fingerprints_are_cached_per_code_object() -> None:
    f = fn_of("f = lambda: 7\n")
    first = fingerprint(f)
    linecache.cache.clear()  # the source is gone, but the cached fingerprint stands
    assert fingerprint(f) == first
