"""The layers, read from the imports themselves: who may import whom, and no cycles.

Every import counts: at module level, under `TYPE_CHECKING`, and inside
functions (a lazy import is still a dependency). The rules are the ones
docs/architecture.md states:

    cli                  -> anything
    api, testing         -> api, observability, runtime, communication, errors
    observability        -> observability, runtime, communication, errors
    runtime              -> runtime, communication, errors
    communication        -> communication
    errors, data         -> nothing of the package
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys
from collections import defaultdict

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "src" / "sage" / "kernel"

ALLOWED = {
    "cli": {"cli", "api", "testing", "observability", "runtime", "communication", "errors", "data", "package"},
    "package": {"api", "runtime", "communication", "errors"},
    "api": {"api", "observability", "runtime", "communication", "errors"},
    "testing": {"api", "runtime", "communication", "errors"},
    "observability": {"observability", "runtime", "communication", "errors"},
    "runtime": {"runtime", "communication", "errors"},
    "communication": {"communication"},
    "errors": set(),
    "data": set(),
}
"""Layer -> the layers it may import (its own included)."""


def module_name(path: pathlib.Path) -> str:
    parts = ("sage", "kernel", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")[2:]
    if not parts:
        return "package"
    if parts[0] == "runtime" and len(parts) > 1 and parts[1] == "communication":
        return "communication"
    return parts[0]


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports (any import statement anywhere in it)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
                target = ".".join([*base, *([node.module] if node.module else [])])
                candidates = [target, *(f"{target}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            graph[name] |= {c for c in candidates if c in modules and c != name}
    for name in modules:
        graph.setdefault(name, set())
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_belongs_to_a_known_layer() -> None:
    assert {layer(m) for m in import_graph()} <= set(ALLOWED)


def test_no_import_cycle_among_the_package_modules() -> None:
    assert cycles(import_graph()) == []


def test_each_layer_imports_only_what_it_may() -> None:
    wrong = sorted(f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
                   if layer(b) not in ALLOWED[layer(a)])
    assert wrong == []


def test_importing_the_package_loads_neither_ray_nor_zeromq() -> None:
    probe = "import sys, sage.kernel, sage.kernel.testing; print(sorted({'ray', 'zmq'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
