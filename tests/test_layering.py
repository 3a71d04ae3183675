"""The package's layering, read from the source (no import runs): no import cycles between modules or between
subpackages, nothing but a ``__main__`` entry point imports the CLI, and every exception class lives in errors.py
(docs/layout.md)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "syncssl"


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = ("syncssl",) + path.relative_to(ROOT).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The syncssl modules ``name`` imports, at the top or inside a function alike."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES and "." in t:
                t = t.rsplit(".", 1)[0]
            if t in MODULES and t != name:
                found.add(t)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}
ENTRY_POINTS = {n for n in MODULES if n.endswith("__main__")}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                on.discard(w)
                comp.append(w)
            on.discard(v)
            if comp:
                out.append(sorted(comp + [v]))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_another_that_imports_it_back():
    assert _cycles({n: GRAPH[n] for n in GRAPH if n not in ENTRY_POINTS}) == []


def test_subpackages_depend_one_way():
    def package(name):  # syncssl.data.decode.video -> syncssl.data; top-level modules stand alone
        return ".".join(name.split(".")[:2])
    graph: dict[str, set[str]] = {}
    for name, targets in GRAPH.items():
        if name in ENTRY_POINTS or name == "syncssl":
            continue
        graph.setdefault(package(name), set()).update(package(t) for t in targets if package(t) != package(name)
                                                      and t != "syncssl")
    assert _cycles(graph) == []


def test_only_entry_points_import_the_cli():
    assert sorted(n for n, targets in GRAPH.items() if "syncssl.cli" in targets and n not in ENTRY_POINTS) == []


def test_exceptions_live_in_the_errors_module():
    def defines_exceptions(path):
        return [c.name for c in ast.walk(ast.parse(path.read_text())) if isinstance(c, ast.ClassDef)
                and not c.name.startswith("_")
                and any(getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Exception")) for b in c.bases)]
    outside = {n: names for n, p in MODULES.items() if n != "syncssl.errors" and (names := defines_exceptions(p))}
    assert outside == {}, "exceptions outside syncssl/errors.py"
