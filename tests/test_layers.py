"""The layering, read from the source (every import statement, module level or inside a
function, since a lazy import is still a dependency):

    optionsmath/   imports nothing of ours
    bus/           imports nothing of ours
    app/           builds on bus/ (and optionsmath/), never on plugins/
    plugins/<x>/   build on all three, never on another plugin

and no import cycle anywhere in them (docs/architecture.md draws the picture); and no module
of them over ``MAX_MODULE_LINES`` lines (DESIGN.md: split a growing module by topic)."""
from __future__ import annotations

import ast
import functools
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("app", "bus", "optionsmath", "plugins")


def modules(root: str = ROOT, packages=PACKAGES) -> dict[str, str]:
    """dotted module name -> file, for every .py file of our packages."""
    out = {}
    for package in packages:
        base = os.path.join(root, package)
        for folder, _dirs, files in os.walk(base):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return out


def imports_of(name: str, path: str, known: set[str]) -> set[str]:
    """The modules of ours that ``name`` imports (``from pkg import sub`` counts as pkg.sub
    when that is a module, else as pkg)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    is_package = path.endswith("__init__.py")
    out = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".")
                base = parts if is_package else parts[:-1]
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # import a.b.c of a package a.b -> a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def _runtime_nodes(tree):
    """Every node except those under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo.extend(child.orelse)
                continue
            todo.append(child)


@functools.lru_cache(maxsize=None)
def _graph_of(root: str, packages: tuple) -> dict[str, frozenset[str]]:
    mods = modules(root, packages)
    known = set(mods)
    return {name: frozenset(imports_of(name, path, known)) for name, path in mods.items()}


def graph(root: str = ROOT, packages=PACKAGES) -> dict[str, set[str]]:
    return {k: set(v) for k, v in _graph_of(root, tuple(packages)).items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    import sys
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in sorted(g):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return out


def layer_violations(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in sorted(g.items()):
        top = mod.split(".")[0]
        for dep in sorted(deps):
            dtop = dep.split(".")[0]
            if top in ("bus", "optionsmath") and dtop != top:
                bad.append(f"{mod} imports {dep} ({top}/ imports nothing of ours)")
            elif top == "app" and dtop == "plugins":
                bad.append(f"{mod} imports {dep} (app/ never imports plugins/)")
            elif top == "plugins" and dtop == "plugins":
                mine, theirs = mod.split(".")[1:2], dep.split(".")[1:2]
                if mine and theirs and mine != theirs:
                    bad.append(f"{mod} imports {dep} (a plugin never imports another plugin)")
    return bad


# Cycles that exist on main today, each with its owner; the test fails on any other cycle,
# and on an entry here that is no longer a cycle (so the list only shrinks).
KNOWN_CYCLES = {
    # tradelog (trades): close_position imports settlement lazily, settlement imports service
    ("plugins.tradelog.service", "plugins.tradelog.settlement"),
}


def test_no_import_cycle():
    found = {tuple(c) for c in cycles(graph())}
    new = found - KNOWN_CYCLES
    assert not new, "import cycles: " + "; ".join(" <-> ".join(c) for c in sorted(new))
    assert not KNOWN_CYCLES - found, f"no longer cycles, drop them from KNOWN_CYCLES: {KNOWN_CYCLES - found}"


def test_layers_hold():
    bad = layer_violations(graph())
    assert not bad, "\n".join(bad)


def test_the_walk_sees_what_it_must(tmp_path):
    """The checks catch each kind of violation, lazy imports included (a fixture tree)."""
    files = {
        "app/__init__.py": "def create_app():\n    from app import auth\n",
        "app/auth.py": "from app import public\nfrom plugins.a import views\n",
        "bus/__init__.py": "", "bus/outbox.py": "import app.auth\n",
        "optionsmath/__init__.py": "from bus import outbox\n",
        "plugins/__init__.py": "", "plugins/a/__init__.py": "",
        "plugins/a/views.py": "from ..b import service\nfrom . import views2\n",
        "plugins/a/views2.py": "from plugins.a.views import x\n",
        "plugins/b/__init__.py": "",
        "plugins/b/service.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from plugins.a import views\n",
    }
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    g = graph(str(tmp_path))
    assert g["app"] == {"app.auth"} and g["app.auth"] == {"app", "plugins.a.views"}
    assert g["plugins.a.views"] == {"plugins.b.service", "plugins.a.views2"}
    assert g["plugins.b.service"] == set()  # a TYPE_CHECKING import is no dependency
    found = cycles(g)
    assert ["app", "app.auth"] in found and ["plugins.a.views", "plugins.a.views2"] in found
    bad = "\n".join(layer_violations(g))
    for expected in ("bus.outbox imports app.auth", "optionsmath imports bus.outbox",
                     "app.auth imports plugins.a.views", "plugins.a.views imports plugins.b.service"):
        assert expected in bad


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_is_walked(package):
    assert any(m == package or m.startswith(package + ".") for m in graph())


# DESIGN.md aims at ~500 lines a module; past this a module must be split by topic.
MAX_MODULE_LINES = 600


def oversized(root: str = ROOT, packages=PACKAGES, limit: int = MAX_MODULE_LINES) -> list[str]:
    """``path (n lines)`` for every module of ours longer than ``limit`` lines, longest first."""
    found = []
    for path in modules(root, packages).values():
        with open(path, encoding="utf-8") as f:
            n = sum(1 for _ in f)
        if n > limit:
            found.append((n, os.path.relpath(path, root)))
    return [f"{rel} ({n} lines)" for n, rel in sorted(found, reverse=True)]


def test_no_module_is_oversized():
    bad = oversized()
    assert not bad, (f"modules over {MAX_MODULE_LINES} lines (split them by topic into cohesive modules): "
                     + ", ".join(bad))


def test_the_size_check_names_each_offender(tmp_path):
    """A fixture tree: 601 and 700 lines are named (longest first), 600 lines and other
    folders' files are not."""
    sizes = {"app/big.py": 700, "plugins/a/long.py": 601, "bus/edge.py": 600, "docs/huge.py": 900}
    for rel, n in sizes.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x = 1\n" * n)
    assert oversized(str(tmp_path)) == [os.path.join("app", "big.py") + " (700 lines)",
                                        os.path.join("plugins", "a", "long.py") + " (601 lines)"]
