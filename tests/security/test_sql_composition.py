"""MariaDB connections run with CLIENT.MULTI_STATEMENTS (app/db.py: the outbox's counter bump,
insert and COMMIT go in one round trip, bus.outbox.flush_and_commit), so an injected ``;``
could stack a statement. What keeps that impossible is that no SQL text is ever built from a
value: statements are SQLAlchemy Core constructs or constant text with bound parameters. This
test reads every module of app/, bus/ and plugins/ and fails, naming the place, on a call of
``text``/``exec_driver_sql``/``execute``/``executemany`` whose SQL argument is an f-string, a
``%``-format or a concatenation — the one allowed place being flush_and_commit, whose
f-string joins constant column names and ``%s`` placeholders only."""
from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
SQL_CALLS = {"text", "exec_driver_sql", "execute", "executemany"}


def _built(node: ast.AST) -> bool:
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)))


def places_building_sql(paths) -> list[str]:
    found = []
    for path in paths:
        tree = ast.parse(path.read_text())
        rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
        where: dict[int, str] = {}  # call line -> "call() in function" (the innermost function wins)
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for fn in sorted(functions, key=lambda n: n.lineno - n.end_lineno):  # outermost first
            assigned = {t.id: n.value for n in ast.walk(fn) if isinstance(n, ast.Assign)
                        for t in n.targets if isinstance(t, ast.Name)}
            for node in ast.walk(fn):
                if not (isinstance(node, ast.Call) and node.args):
                    continue
                f = node.func
                call = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                if call not in SQL_CALLS:
                    continue
                arg = node.args[0]
                if isinstance(arg, ast.Name) and arg.id in assigned:
                    arg = assigned[arg.id]  # sql = f"..."; cursor.execute(sql)
                if _built(arg):
                    where[node.lineno] = (call, fn.name)
        found += [f"{rel}:{line} {call}() in {name}" for line, (call, name) in where.items()]
    return sorted(found)


def test_no_sql_text_is_built_from_values():
    paths = [*ROOT.glob("app/**/*.py"), *ROOT.glob("bus/**/*.py"), *ROOT.glob("plugins/**/*.py")]
    assert len(paths) > 50
    assert not places_building_sql(paths), places_building_sql(paths)


def test_the_check_finds_a_built_statement(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('def f(conn, name):\n    sql = f"SELECT * FROM t WHERE n = \'{name}\'"\n    conn.exec_driver_sql(sql)\n'
                   'def g(conn, name):\n    conn.execute(sa.text("SELECT 1 WHERE n = " + name))\n'
                   'def ok(conn, name):\n    conn.execute(sa.text("SELECT 1 WHERE n = :n"), {"n": name})\n')
    found = places_building_sql([bad])
    assert [p.split(" in ")[1] for p in found] == ["f", "g"], found
