"""The house stays one-way (issue 7, STYLE.md "The shape of the house").

Builds the import graph of ``trigger_nb`` from the source with ``ast`` — every ``import`` counts,
including those inside functions and under ``TYPE_CHECKING``, because each one is a part that knows
another — and checks the rules a newcomer relies on: no import circle, only the composition root's
users import ``_client``, the engine knows nothing above it, files stay small, and no code reads
another object's ``_private`` attribute.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "trigger_nb"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE
MAX_LINES = 600

# Modules allowed to import the composition root: the public surface, the user-facing entry
# points, and the notebook layer (the magic is the client's user, like a script is).
CLIENT_USERS = {f"{PACKAGE}._client", PACKAGE, f"{PACKAGE}.testing", f"{PACKAGE}.cli"}
CLIENT_USER_PACKAGES = (f"{PACKAGE}._notebook",)

# The engine sits below everything except the store and the shared leaves.
ENGINE = f"{PACKAGE}._engine"
ABOVE_ENGINE = tuple(
    f"{PACKAGE}.{name}" for name in ("_notebook", "_receiver", "_events", "_client", "_run")
)

# ``x._name`` where ``x`` is not ``self``/``cls`` and ``_name`` is not an attribute the module
# itself defines: (module, expression) -> why reaching in is the honest thing to do there.
PRIVATE_ACCESS_ALLOWED = {
    # diskcache has no public prefix scan nor a way to read a file-backed value by its row: the
    # store queries diskcache's own table through ``Cache._sql`` and reads values through
    # ``Cache._disk`` (diskcache's documented schema; covered by tests/test_store.py).
    ("trigger_nb._store._diskcache", "self._cache._sql"),
    ("trigger_nb._store._diskcache", "self._cache._disk"),
}


def _modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package."""
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _package_of(module: str) -> str:
    """The package a module's relative imports resolve against."""
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def _imported(module: str, tree: ast.AST) -> Iterator[str]:
    """Every ``trigger_nb`` module ``module`` imports, anywhere in its source."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(module)
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            # ``from pkg import sub`` imports the submodule ``pkg.sub``
            targets = [target] + [f"{target}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target in MODULES:
                yield target
                # importing ``a.b.c`` runs ``a/b/__init__`` first; inside ``a.b`` that is
                # already under way, and the root package is the public surface above all
                parent = target.rpartition(".")[0]
                if parent != PACKAGE and not (module + ".").startswith(parent + "."):
                    yield parent


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        graph[module] = {target for target in _imported(module, tree) if target != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _one_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A concrete circle inside a component, for a readable failure message."""
    members = set(component)
    path = [component[0]]
    seen = {component[0]}
    while True:
        nxt = sorted(graph[path[-1]] & members)
        step = next((n for n in nxt if n in seen), None)
        if step is not None:
            return path[path.index(step) :] + [step]
        path.append(nxt[0])
        seen.add(nxt[0])


GRAPH = _graph()


def test_the_graph_sees_the_package() -> None:
    # guards the checks below against passing on an empty or unresolved graph
    assert f"{PACKAGE}._client" in GRAPH and f"{ENGINE}._runner" in GRAPH
    assert f"{PACKAGE}._exceptions" in GRAPH[f"{PACKAGE}._client"]
    assert sum(map(len, GRAPH.values())) > 50


def test_no_import_circle() -> None:
    cycles = _cycles(GRAPH)
    assert not cycles, "import circles:\n" + "\n".join(
        " -> ".join(_one_cycle(GRAPH, component)) + f"   (component of {len(component)})"
        for component in cycles
    )


def test_only_the_root_s_users_import_the_client() -> None:
    client = f"{PACKAGE}._client"
    offenders = sorted(
        module
        for module, targets in GRAPH.items()
        if client in targets
        and module not in CLIENT_USERS
        and not module.startswith(CLIENT_USER_PACKAGES)
    )
    assert not offenders, f"parts that import the composition root: {offenders}"


def test_engine_knows_nothing_above_it() -> None:
    offenders = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if module.startswith(ENGINE)
        for target in targets
        if target.startswith(ABOVE_ENGINE)
    )
    assert not offenders, f"the engine reaches up: {offenders}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_files_stay_small(module: str) -> None:
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{module} has {lines} lines: what second job did it take on?"


def _own_attributes(tree: ast.AST) -> set[str]:
    """Attribute names a module defines itself: ``self.x = ...``, methods and class fields."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)
    return names


def _is_private(name: str) -> bool:
    # ``_repr_html_`` / ``_ipython_display_`` are IPython's public display protocol
    return name.startswith("_") and not name.endswith("_")


def test_no_reaching_into_private_attributes() -> None:
    """Python's privacy is per module: a module may read the ``_private`` attributes of the
    objects it defines (``other._x`` in ``__eq__``), never another module's."""
    offenders = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        own = _own_attributes(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not _is_private(node.attr):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            expression = ast.unparse(node)
            if node.attr in own or (module, expression) in PRIVATE_ACCESS_ALLOWED:
                continue
            offenders.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}: {expression}")
    assert not offenders, "reads of another object's private attribute:\n" + "\n".join(offenders)
