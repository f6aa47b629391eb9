"""The host's own endpoints: /health, /asyncapi.json, the SSE routes plugins declare, and
static files (Swagger UI assets, the browser console)."""
from __future__ import annotations

import os

from flask import current_app, jsonify, send_from_directory
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from app import errors
from app.web import public

blp = Blueprint("core", __name__, description="Service health and the event catalogue.")
STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")


class HealthSchema(Schema):
    ok = fields.Boolean(required=True)
    checks = fields.Dict(required=True, metadata={"description": "name -> {ok, detail}"})
    plugins = fields.List(fields.String(), required=True)


@blp.route("/health")
class Health(MethodView):
    @public
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, schema=HealthSchema, description="a dependency is down")
    def get(self):
        """Database, cache and plugin checks. 503 when the database is down; a cache outage is
        reported but does not fail the service (it stays correct without it)."""
        ext = current_app.extensions["tradeloop"]
        checks = {}
        try:
            with ext.db.transaction() as c:
                c.exec_driver_sql("SELECT 1")
            checks["database"] = {"ok": True, "detail": ext.db.dialect}
        except Exception as exc:
            checks["database"] = {"ok": False, "detail": str(exc)[:200]}
        try:
            checks["cache"] = {"ok": bool(ext.cache.ping()), "detail": ext.cache.name}
        except Exception as exc:
            checks["cache"] = {"ok": False, "detail": f"{ext.cache.name}: {str(exc)[:200]} (degraded: database only)"}
        for plugin, named in ext.plugins.call("health_checks", app=current_app):
            for name, check in named.items():
                try:
                    ok, detail = check()
                except Exception as exc:
                    ok, detail = False, str(exc)[:200]
                checks[f"{plugin}.{name}"] = {"ok": bool(ok), "detail": detail}
        ok = all(v["ok"] for k, v in checks.items() if k != "cache")
        return ({"ok": ok, "checks": checks, "plugins": ext.plugins.names}, 200 if ok else 503)



@blp.route("/asyncapi.json")
class AsyncApi(MethodView):
    @public
    @blp.response(200)
    def get(self):
        """The event catalogue (AsyncAPI 2.6 style): topics, event types, payload schemas,
        Kafka keys and headers, and the consumer groups of the enabled plugins."""
        from app.asyncapi import document
        return jsonify(document(current_app.extensions["tradeloop"]))



def register_sse(app, ext) -> None:
    from app.auth import current_user
    from app.sse import stream_response

    for plugin, stream in ext.sse_streams:
        def view(_topic=stream.topic):
            return stream_response(ext, _topic, current_user().id)
        view.__name__ = f"sse_{plugin}_{stream.path.strip('/').replace('/', '_').replace('-', '_')}"
        app.add_url_rule(stream.path, endpoint=view.__name__, view_func=view, methods=["GET"])
    from app.sse import document_streams
    app.extensions["tradeloop_api"].on_spec_built(lambda spec: document_streams(app, spec, ext.sse_streams))


def register_static(app) -> None:
    def static(filename):
        path = os.path.join(STATIC_DIR, filename)
        if not os.path.isfile(path):
            raise errors.NotFound("no such file")
        resp = send_from_directory(STATIC_DIR, filename, max_age=300)
        return resp
    static._public = True
    app.add_url_rule("/static/<path:filename>", endpoint="static", view_func=static)
