"""Every extra field a domain error carries (a keyword where it is raised, or set on its
``extra`` afterwards) is in the one error schema (the contract fuzz
checks responses against it; an undocumented field is a violation)."""
from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
STANDARD = {"code", "errors", "current"}


def test_every_keyword_a_raised_domain_error_carries_is_documented():
    from app import ErrorSchema, errors
    domain = {name for name, obj in vars(errors).items() if isinstance(obj, type) and issubclass(obj, errors.DomainError)}
    documented = set(ErrorSchema().fields)
    missing = []
    for path in [*ROOT.glob("app/**/*.py"), *ROOT.glob("plugins/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                f = node.exc.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                if name in domain:
                    missing += [f"{path.relative_to(ROOT)}: {name}({kw.arg}=...)" for kw in node.exc.keywords
                                if kw.arg and kw.arg not in STANDARD and kw.arg not in documented]
            # err.extra["item"] = i: a field added to an error after it was made
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Attribute)
                            and target.value.attr == "extra" and isinstance(target.slice, ast.Constant)
                            and target.slice.value not in STANDARD and target.slice.value not in documented):
                        missing.append(f"{path.relative_to(ROOT)}:{node.lineno}: .extra[{target.slice.value!r}]")
    assert not missing, "add these to app.ErrorSchema: " + "; ".join(missing)
