"""Unknown query parameters are 422 naming them, on every operation of /openapi.json (issue 17:
"unknown query parameters must be 422, as unknown body fields are"), and every query parameter
the document names is accepted as known.

The walk reads the served document, so an operation a plugin adds later is covered with no
extra work, and an operation that ignores an unknown parameter (or rejects a documented one)
fails here."""
from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest

from app import create_app
from tests.conftest import make_user

ALL = ["tradelog", "riskgraph", "mlloop", "breakers", "tests.plugins.notes.plugin"]
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from app.migrate import upgrade
    db = tmp_path_factory.mktemp("query") / "q.db"
    app = create_app({"DATABASE_URL": f"sqlite:///{db}", "TRADELOOP_PLUGINS": ALL, "SECRET_KEY": "x",
                      "RATELIMIT_ENABLED": False, "KAFKA_BOOTSTRAP_SERVERS": None})
    app.config["PROPAGATE_EXCEPTIONS"] = False
    upgrade(app.extensions["tradeloop"], echo=None)
    admin = make_user(app, admin=True)  # admin: admin-only operations answer 403 before input
    spec = app.test_client().get("/openapi.json").json
    return app, admin, spec


def _operations(spec):
    for path, ops in spec["paths"].items():
        shared = ops.get("parameters", [])
        for method in METHODS:
            if method in ops:
                params = shared + ops[method].get("parameters", [])
                yield method, path, params


def _url(path: str, params: list[dict]) -> str:
    """The path with a well-formed value for each path parameter (the check runs before any
    lookup, so the value need not exist; it must only route)."""
    def value(name):
        p = next(p for p in params if p["in"] == "path" and p["name"] == name)
        schema = p.get("schema", {})
        if schema.get("enum"):
            return str(schema["enum"][0])
        if schema.get("type") == "integer":
            return "1"
        return "z" * max(1, schema.get("minLength", 1))
    return re.sub(r"\{([^}]+)\}", lambda m: value(m.group(1)), path)


def _call(client, method, url):
    r = getattr(client, method)(url)
    r.close()  # (an SSE stream that answered 200 would never end)
    return r


def test_every_operation_answers_an_unknown_query_parameter_with_422_naming_it(world):
    app, admin, spec = world
    wrong, checked = [], []
    for method, path, params in _operations(spec):
        documented = {p["name"] for p in params if p["in"] == "query"}
        # the unknown one beside a documented one: only the unknown one is named
        query = {"zz_unknown": "1", **({sorted(documented)[0]: "1"} if documented else {})}
        r = _call(admin, method, f"{_url(path, params)}?{urlencode(query)}")
        named = (r.json or {}).get("errors", {}).get("query", {}) if r.is_json else {}
        if r.status_code != 422 or set(named) != {"zz_unknown"} or "zz_unknown" not in r.json["message"]:
            wrong.append(f"{method.upper()} {path}: {r.status_code} {r.get_data(as_text=True)[:200]}")
        checked.append(f"{method.upper()} {path}")
    assert not wrong, "\n".join(wrong)
    # the walk covered what the issue named, the other plugins' lists and the SSE streams
    for label in ("GET /api/admin/ml/models", "GET /api/admin/ml/drift", "GET /api/admin/ml/experiments",
                  "GET /api/positions", "GET /api/risk-graph/strategies", "GET /api/breakers/audit",
                  "GET /sse/trade-log", "POST /api/ml/score", "DELETE /api/risk-graph/strategies/{strategy_id}"):
        assert label in checked


def test_every_documented_query_parameter_is_accepted_as_known(world):
    """Each documented query parameter alone is never reported unknown (its value may still be
    invalid: ``x`` is no page number). ``DELETE /api/risk-graph/strategies/{id}`` documents
    ``change_reason`` beside its ``If-Match`` header (the header used to replace it)."""
    app, admin, spec = world
    rejected, seen = [], 0
    for method, path, params in _operations(spec):
        if method != "get" and method != "delete":
            continue
        for name in sorted({p["name"] for p in params if p["in"] == "query"}):
            r = _call(admin, method, f"{_url(path, params)}?{urlencode({name: 'x'})}")
            seen += 1
            if r.status_code == 422 and r.json.get("errors", {}).get("query", {}).get(name) == ["Unknown field."]:
                rejected.append(f"{method.upper()} {path} ?{name}")
    assert not rejected
    assert seen >= 40  # pagination alone documents page and page_size on ~20 lists
    delete = next(params for method, path, params in _operations(spec)
                  if (method, path) == ("delete", "/api/risk-graph/strategies/{strategy_id}"))
    assert {p["name"] for p in delete} >= {"change_reason", "If-Match", "strategy_id"}


def test_sign_in_and_routing_come_first(world):
    app, admin, spec = world
    anonymous = app.test_client().get("/api/admin/ml/models?zz_unknown=1")
    assert anonymous.status_code == 401
    assert app.test_client().get("/api/nowhere?zz_unknown=1", headers={"Authorization": f"Bearer {admin.token}"}).status_code == 404
    plain = make_user(app)
    assert plain.get("/api/admin/ml/models?zz_unknown=1").status_code == 403  # admin-only first
    ok = admin.get("/api/admin/ml/models?status=champion&page=1&page_size=5")
    assert ok.status_code == 200 and "X-Pagination" in ok.headers
