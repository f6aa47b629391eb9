"""mlloop's layering, read from the code: modules under ~500 lines, no import cycle inside the
plugin, a pure ML core and domain (no Flask, no SQL, no bus), a service layer without Flask,
and start-up imports (plugin, views, schemas, CLI) that load neither numpy, pandas, scipy nor
CatBoost (issue 12: ``tradeloop --help`` must start fast)."""
from __future__ import annotations

import ast
import os
import subprocess
import sys

from tests.conftest import ROOT

PLUGIN = os.path.join(ROOT, "plugins", "mlloop")
PACKAGE = "plugins.mlloop"
MAX_LINES = 500


def _modules() -> dict[str, str]:
    out = {}
    for dirpath, _dirs, files in os.walk(PLUGIN):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                out[rel[:-9] if rel.endswith(".__init__") else rel] = path
    return out


def _runtime_nodes(tree):
    """Every node, except what sits under ``if TYPE_CHECKING:`` (annotations only)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def _imports(name: str, path: str) -> set[str]:
    """Modules imported anywhere in the file at run time (top level or inside functions)."""
    tree = ast.parse(open(path).read())
    package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    found = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def _top_level_imports(path: str) -> set[str]:
    tree = ast.parse(open(path).read())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_no_module_over_500_lines():
    long = {name: n for name, path in _modules().items()
            if (n := sum(1 for _ in open(path))) > MAX_LINES}
    assert long == {}


def test_no_import_cycle_inside_the_plugin():
    mods = _modules()
    graph = {name: {m for m in _imports(name, path) if m in mods and m != name}
             for name, path in mods.items()}
    seen, stack, cycles = {}, [], []

    def visit(n):
        seen[n] = "open"
        stack.append(n)
        for m in sorted(graph[n]):
            if seen.get(m) == "open":
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in seen:
                visit(m)
        stack.pop()
        seen[n] = "done"

    for n in sorted(graph):
        if n not in seen:
            visit(n)
    assert cycles == []


def test_the_ml_core_and_the_domain_are_pure_and_the_service_has_no_flask():
    bad = {}
    for name, path in _modules().items():
        imported = {m.split(".")[0] if not m.startswith(PACKAGE) else m for m in _imports(name, path)}
        if name.startswith((f"{PACKAGE}.ml", f"{PACKAGE}.domain")):
            banned = {"flask", "flask_smorest", "sqlalchemy", "app", "bus"}
            banned |= {m for m in imported if m.startswith(f"{PACKAGE}.") and not m.startswith(
                (f"{PACKAGE}.ml", f"{PACKAGE}.domain"))}
        elif name.startswith((f"{PACKAGE}.service", f"{PACKAGE}.sim")):
            banned = {"flask", "flask_smorest"} | {m for m in imported if m.startswith(
                (f"{PACKAGE}.views", f"{PACKAGE}.admin_views", f"{PACKAGE}.cli", f"{PACKAGE}.plugin"))}
        else:
            continue
        hit = imported & banned
        if hit:
            bad[name] = sorted(hit)
    assert bad == {}


def test_heavy_libraries_stay_out_of_what_start_up_imports():
    heavy = {"numpy", "pandas", "scipy", "catboost"}
    mods = _modules()
    for name in ("plugin", "views", "admin_views", "schemas", "admin_schemas", "events", "cli",
                 "handlers", "tables", "immutable", "service"):
        assert not (_top_level_imports(mods[f"{PACKAGE}.{name}"]) & heavy), name
    code = ("import sys, plugins.mlloop.plugin; "
            "print(sorted(m for m in ('numpy', 'pandas', 'scipy', 'catboost') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]"
