"""Turn a ``%%job`` cell body into ``async def run(payload, io, ctx)`` (SPEC §2).

The body is parsed as a module (``ast.parse`` accepts a top-level ``await`` and ``return``),
its statements become the body of an async function, and line numbers are shifted so that
tracebacks and syntax errors point at the line of the cell the user sees (line 1 is the
``%%job`` line). The function's globals are the notebook namespace: the body reads notebook
variables, and ``global x`` writes one.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Iterator
from typing import Any

BODY_NAME = "run"


def _own_nodes(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """Nodes of the body itself, not of functions/classes/lambdas defined in it."""
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                stack.append(child)


def compile_body(
    body: str, *, filename: str, namespace: dict[str, Any], line_offset: int = 1
) -> Callable[..., Any]:
    """Compile ``body`` into an async job function whose globals are ``namespace``.

    Raises ``SyntaxError`` with ``lineno`` counted in cell lines (body line + ``line_offset``).
    """
    try:
        tree = ast.parse(body, filename=filename, mode="exec")
    except SyntaxError as exc:
        if exc.lineno is not None:
            exc.lineno += line_offset
            if getattr(exc, "end_lineno", None) is not None:
                exc.end_lineno = exc.end_lineno + line_offset  # type: ignore[operator]
        raise
    for node in _own_nodes(tree.body):
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            raise SyntaxError(
                "'yield' is not allowed in a %%job body (the body is the job's run function; "
                "return its output instead)",
                (filename, node.lineno + line_offset, node.col_offset + 1, None),
            )
    args = ast.arguments(
        posonlyargs=[],
        args=[ast.arg(arg="payload"), ast.arg(arg="io"), ast.arg(arg="ctx")],
        vararg=None,
        kwonlyargs=[],
        kw_defaults=[],
        kwarg=None,
        defaults=[],
    )
    fields: dict[str, Any] = {}
    if sys.version_info >= (3, 12):
        fields["type_params"] = []
    function = ast.AsyncFunctionDef(
        name=BODY_NAME,
        args=args,
        body=tree.body or [ast.Pass()],
        decorator_list=[],
        returns=None,
        type_comment=None,
        lineno=1,
        col_offset=0,
        **fields,
    )
    module = ast.Module(body=[function], type_ignores=[])
    ast.fix_missing_locations(module)
    ast.increment_lineno(module, line_offset)
    code = compile(module, filename, "exec")
    local: dict[str, Any] = {}
    exec(code, namespace, local)
    fn: Callable[..., Any] = local[BODY_NAME]
    fn.__qualname__ = BODY_NAME
    return fn
