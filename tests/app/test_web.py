"""The host's Blueprint base (``versioned``, ``paginated``) and the bound ``Topic.emit``."""
from __future__ import annotations

import json

import pytest
from flask.views import MethodView
from marshmallow import Schema, fields

from app import create_app
from app.web import Blueprint, Paged
from bus.topic import Topic

ALL = ["tradelog", "riskgraph", "mlloop", "breakers", "tests.plugins.notes.plugin"]


class Thing(Schema):
    id = fields.String()


class Body(Schema):
    x = fields.Integer()


def small_app(tmp_path):
    """A host app with one extra blueprint exercising the decorators on their own."""
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/w.db", "TRADELOOP_PLUGINS": [], "SECRET_KEY": "x"})
    blp = Blueprint("webtest", __name__, url_prefix="/webtest")

    @blp.route("/thing")
    class OneThing(MethodView):
        @blp.response(200, Thing)
        @blp.versioned
        def get(self):
            # the body's schema has no version: the ETag comes from the returned object
            return {"id": "t1", "version": 7}

        @blp.arguments(Body)
        @blp.response(200, Thing)
        @blp.versioned(if_match=True)
        def put(self, data, expected):
            return {"id": f"x{data['x']}", "version": expected + 1}

    @blp.route("/whole")
    class Whole(MethodView):
        @blp.response(200, Thing(many=True))
        @blp.paginated
        def get(self):
            return [{"id": str(i)} for i in range(7)]

    @blp.route("/sql")
    class InSql(MethodView):
        @blp.response(200, Thing(many=True))
        @blp.paginated
        def get(self, pagination):
            first = pagination.first_item
            return Paged([{"id": str(i)} for i in range(first, min(first + pagination.page_size, 120))], 120)

    app.extensions["tradeloop_api"].register_blueprint(blp)
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/webtest"):
            app.view_functions[rule.endpoint]._public = True
    return app


def test_versioned_takes_the_etag_from_the_returned_object_and_checks_if_match(tmp_path):
    c = small_app(tmp_path).test_client()
    r = c.get("/webtest/thing")
    assert r.json == {"id": "t1"} and r.headers["ETag"] == '"7"'
    missing = c.put("/webtest/thing", json={"x": 1})
    assert missing.status_code == 428 and missing.json["code"] == "precondition_required"
    invalid = c.put("/webtest/thing", json={"x": "no"})  # the body is checked first, as before
    assert invalid.status_code == 422
    ok = c.put("/webtest/thing", json={"x": 1}, headers={"If-Match": '"4"'})
    assert ok.status_code == 200 and ok.headers["ETag"] == '"5"'


def test_paginated_cuts_the_page_or_takes_it_from_sql(tmp_path):
    c = small_app(tmp_path).test_client()
    r = c.get("/webtest/whole?page=2&page_size=3")
    assert [t["id"] for t in r.json] == ["3", "4", "5"]
    meta = json.loads(r.headers["X-Pagination"])
    assert meta == {"total": 7, "total_pages": 3, "first_page": 1, "last_page": 3, "page": 2,
                    "previous_page": 1, "next_page": 3}
    r = c.get("/webtest/sql?page=3&page_size=50")
    assert [t["id"] for t in r.json] == [str(i) for i in range(100, 120)]
    assert json.loads(r.headers["X-Pagination"])["total"] == 120
    default = c.get("/webtest/sql")
    assert len(default.json) == 50  # the host's default page size
    too_big = c.get("/webtest/sql?page_size=501")
    assert too_big.status_code == 422 and "page_size" in too_big.json["errors"]["query"]


def test_every_operation_returning_a_version_is_versioned(tmp_path):
    """A response schema with an integer ``version`` means a versioned aggregate: its view must
    be ``versioned`` so the ETag is set (from the returned object), and every view that needs
    If-Match documents it."""
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/all.db", "TRADELOOP_PLUGINS": ALL, "SECRET_KEY": "x"})
    spec = app.test_client().get("/openapi.json").json
    schemas = spec["components"]["schemas"]
    by_rule = {}
    for rule in app.url_map.iter_rules():
        by_rule[rule.rule] = rule
    unversioned, undocumented = [], []
    for path, ops in spec["paths"].items():
        rule = by_rule[_flask_rule(path, by_rule)]
        view = app.view_functions[rule.endpoint]
        for method, op in ops.items():
            if method == "parameters":
                continue
            fn = getattr(getattr(view, "view_class", None), method, view)
            for status in ("200", "201"):
                schema = _schema_of(op.get("responses", {}).get(status), schemas)
                props = (schema or {}).get("properties", {})
                if props.get("version", {}).get("type") == "integer" and not getattr(fn, "_tl_versioned", False):
                    unversioned.append(f"{method.upper()} {path}")
            if getattr(fn, "_tl_if_match", False) and not any(
                    p.get("name") == "If-Match" and p.get("required") for p in op.get("parameters", [])):
                undocumented.append(f"{method.upper()} {path}")
    assert not unversioned, f"return a version but are not @blp.versioned: {unversioned}"
    assert not undocumented


def _flask_rule(path: str, rules: dict) -> str:
    import re
    pattern = re.sub(r"\{[^}]+\}", "<[^>]+>", re.escape(path).replace(r"\{", "{").replace(r"\}", "}"))
    matches = [r for r in rules if re.fullmatch(pattern, r)]
    assert matches, path
    return matches[0]


def _schema_of(response: dict | None, schemas: dict) -> dict | None:
    if not response:
        return None
    schema = response.get("content", {}).get("application/json", {}).get("schema")
    if schema and "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def test_topic_emit_is_bound_to_its_topic_and_refuses_undeclared_types(tmp_path):
    from bus import outbox
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/t.db", "TRADELOOP_PLUGINS": [], "SECRET_KEY": "x"})
    from app.migrate import upgrade
    upgrade(app.extensions["tradeloop"], echo=None)
    topic = Topic("webtest.events", "test", {"Happened": Thing})
    db = app.extensions["tradeloop"].db
    with db.transaction() as conn:
        ev = topic.emit(conn, "Happened", aggregate_type="thing", aggregate_id="t1", aggregate_version=2,
                        user_id=5, payload={"id": "t1"})
        with pytest.raises(ValueError, match="webtest.events declares no event type 'Nope'"):
            topic.emit(conn, "Nope", aggregate_type="thing", aggregate_id="t1", user_id=5, payload={})
        many = topic.emit_many(conn, [dict(type="Happened", aggregate_type="thing", aggregate_id=f"t{i}",
                                           user_id=5, payload={"id": str(i)}) for i in range(3)])
    assert ev.stream == "webtest.events" and ev.event_seq == 1 and ev.aggregate_version == 2
    assert [e.event_seq for e in many] == [2, 3, 4]
    with db.read() as conn:
        assert [e.event_id for e in outbox.read(conn, "webtest.events")] == [ev.event_id] + [e.event_id for e in many]


def test_every_list_has_the_one_shape(tmp_path):
    """Every GET answering a JSON array documents ``page``/``page_size`` and ``X-Pagination``
    (flask-smorest's pagination), and no GET wraps a list alone in an object."""
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/l.db", "TRADELOOP_PLUGINS": ALL, "SECRET_KEY": "x"})
    spec = app.test_client().get("/openapi.json").json
    schemas = spec["components"]["schemas"]
    unpaged, wrapped, lists = [], [], 0
    for path, ops in spec["paths"].items():
        op = ops.get("get")
        if not op:
            continue
        ok = op.get("responses", {}).get("200", {})
        schema = _schema_of(ok, schemas) or {}
        if schema.get("type") == "array":
            lists += 1
            params = {p.get("name") for p in op.get("parameters", [])}
            if not ({"page", "page_size"} <= params and "X-Pagination" in ok.get("headers", {})):
                unpaged.append(path)
        props = schema.get("properties", {})
        if len(props) == 1 and next(iter(props.values())).get("type") == "array":
            wrapped.append(path)
    assert lists >= 15
    assert not unpaged, f"lists without the host's pagination: {unpaged}"
    assert not wrapped, f"lists wrapped in an object: {wrapped}"


def test_a_page_beyond_any_database_is_a_422_naming_it(tmp_path):
    c = small_app(tmp_path).test_client()
    r = c.get("/webtest/sql?page=184467440737095518")
    assert r.status_code == 422 and r.json["errors"] == {"query": {"page": ["must be at most 1000000"]}}


def test_the_document_is_built_on_first_read_and_covers_blueprints_registered_after(tmp_path):
    """The OpenAPI document is built lazily (the CLI never reads it): a blueprint serves as soon
    as it is registered, and one registered after the document was first read is in the next
    read too, with the host's Idempotency-Key header on its PUT."""
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/lazy.db", "TRADELOOP_PLUGINS": [], "SECRET_KEY": "x"})
    api = app.extensions["tradeloop_api"]
    assert "/api/auth/me" in api.spec._paths  # the first read documents what was registered
    late = small_app(tmp_path)  # a second app: registers "webtest" after create_app
    late_api = late.extensions["tradeloop_api"]
    assert "/webtest/thing" in late_api.spec.to_dict()["paths"]  # read before the next one
    blp = Blueprint("later", __name__, url_prefix="/later")

    @blp.route("/x")
    class X(MethodView):
        @blp.arguments(Body)
        @blp.response(200, Thing)
        def put(self, data):
            return {"id": str(data["x"])}
    late_api.register_blueprint(blp)
    late.view_functions["later.X"]._public = True
    assert late.test_client().put("/later/x", json={"x": 3}).json == {"id": "3"}  # served at once
    doc = late.test_client().get("/openapi.json").json
    assert "/later/x" in doc["paths"] and "later" in [t["name"] for t in doc["tags"]]
    names = [p["name"] for p in doc["paths"]["/later/x"]["put"]["parameters"]]
    assert names.count("Idempotency-Key") == 1
    assert [p["name"] for p in doc["paths"]["/webtest/thing"]["put"]["parameters"]].count("Idempotency-Key") == 1
