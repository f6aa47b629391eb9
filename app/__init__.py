"""The Flask host. It knows no context by name: everything a context adds comes through the
hooks in ``app.hookspecs`` from the plugins that ``TRADELOOP_PLUGINS`` enables.

``create_app(config)`` builds the app; ``app.extensions["tradeloop"]`` (see ``ext()``) holds
the database, cache, bus, plugins and the SSE hub. Views use ``conn()`` (the request's
transaction) and ``user()`` (the signed-in user) and call service functions.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re

import flask_smorest
from flask import Flask, current_app, g, jsonify, request
from marshmallow import Schema
from marshmallow import fields as ma

from app import config as config_mod
from app import errors, idempotency, routing, security
from app.cache import from_url as cache_from_url
from app.db import Database
from app.plugins import PluginError, Plugins
from bus import outbox

from app.web import conn, ext, public, user  # noqa: F401  (what views use, re-exported)

log = logging.getLogger("tradeloop")


class ErrorSchema(Schema):
    """The one error shape of every endpoint."""
    status = ma.Integer(required=True, metadata={"description": "HTTP status"})
    code = ma.String(required=True, metadata={"description": "machine-readable, e.g. version_conflict"})
    message = ma.String(required=True)
    errors = ma.Dict(metadata={"description": "per location and field: {'json': {'strike': ['...']}}"})
    current = ma.Dict(metadata={"description": "409 version_conflict: the current representation"})
    current_version = ma.Integer()
    vetoes = ma.List(ma.Dict(), metadata={"description": "403 order_vetoed: each veto's source and message"})
    state = ma.String(metadata={"description": "409 invalid_state: the resource's current state, e.g. filled"})
    leg_id = ma.String(metadata={"description": "409 position_not_flat: the leg that still holds a quantity"})
    settles_at = ma.String(metadata={"description": "409 (not yet settleable): when the contract settles, UTC"})
    blockers = ma.List(ma.Dict(), metadata={"description": "409 (model promotion refused): each blocker {code, message, ...}"})
    item = ma.Integer(metadata={"description": "422 on a request of several items (fills): the index, from 0, of the item refused"})


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


class Api(flask_smorest.Api):
    """flask-smorest's Api, with the OpenAPI document built on first use (``api.spec``:
    GET /openapi.json, /docs, a test) rather than at start-up. A blueprint's routes serve
    as soon as it is registered; its documentation (schemas resolved into the document) is
    added when the document is first read, so CLI commands, which never read it, do not pay
    for it. ``on_spec_built(fn)`` adds a step run with the spec after each batch of
    blueprints is documented (steps must be idempotent: a blueprint registered later
    documents a new batch). ``tradeloop serve`` and app.wsgi build it before serving."""
    ERROR_SCHEMA = ErrorSchema

    def __init__(self, app=None, **kwargs):
        import threading
        self._doc_pending: list = []
        self._doc_steps: list = []
        self._doc_lock = threading.RLock()
        self._doc_building = False
        super().__init__(app, **kwargs)

    @property
    def spec(self):
        if self.__dict__.get("_doc_pending") and not self._doc_building:
            self._document_pending()
        return self.__dict__.get("_spec")

    @spec.setter
    def spec(self, value):
        self.__dict__["_spec"] = value

    def register_blueprint(self, blp, *, parameters=None, **options):
        """Serve ``blp`` now; document it when the spec is first read (see the class)."""
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)
        with self._doc_lock:
            self._doc_pending.append((blp, name, parameters))

    def on_spec_built(self, step) -> None:
        """Run ``step(spec)`` each time pending blueprints have been documented."""
        with self._doc_lock:
            self._doc_steps.append(step)
            self._doc_pending.append(None)  # (a new step runs on the next read, too)

    def _document_pending(self) -> None:
        with self._doc_lock:
            if not self._doc_pending or self._doc_building:
                return
            self._doc_building = True
            try:
                spec = self.__dict__["_spec"]
                while self._doc_pending:
                    item = self._doc_pending.pop(0)
                    if item is None:
                        continue
                    blp, name, parameters = item
                    blp.register_views_in_doc(self, self._app, spec, name=name, parameters=parameters)
                    spec.tag({"name": name, "description": blp.description})
                for step in self._doc_steps:
                    step(spec)
            finally:
                self._doc_building = False

    def _register_pagination_header(self):
        """X-Pagination carries JSON: documented as ``content: application/json`` (a header
        ``schema`` would mean OpenAPI's comma-separated "simple" style)."""
        from flask_smorest.pagination import PaginationMetadataSchema
        self.spec.components.header("PAGINATION", {
            "description": "Pagination metadata (JSON): total, total_pages, first_page, last_page, page, "
                           "previous_page, next_page.",
            "content": {"application/json": {"schema": PaginationMetadataSchema}}}, lazy=True)

    def handle_http_exception(self, error):
        status = error.code or 500
        body = {"status": status, "code": _snake(error.name), "message": error.description or error.name}
        headers = {}
        data = getattr(error, "data", None)
        if data:
            if "messages" in data:
                body["errors"] = data["messages"]
                if status == 400 and isinstance(data["messages"].get("json"), list):
                    body["code"] = "malformed_json"
                    body["message"] = "the request body is not valid JSON"
                    return jsonify(body), status, data.get("headers") or {}
                fields_ = [f"{loc}.{f}" for loc, msgs in data["messages"].items()
                           for f in (msgs if isinstance(msgs, dict) else ["_"])]
                body["message"] = ("invalid input: " + ", ".join(fields_)) if fields_ else body["message"]
                if status == 422:
                    body["code"] = "validation_error"
            if "message" in data:
                body["message"] = data["message"]
            headers = data.get("headers") or {}
        # The exception's own headers too: Allow on a 405 (RFC 9110), not its HTML Content-Type.
        headers = {**{k: v for k, v in error.get_headers() if k.lower() != "content-type"}, **headers}
        return jsonify(body), status, headers


# ------------------------------------------------------------------------------------


class Tradeloop:
    """Everything the host owns for one app."""

    def __init__(self, app: Flask, cfg: dict):
        self.app = app
        self.config = cfg
        self.db = Database(cfg["DATABASE_URL"], pool_size=int(cfg["DATABASE_POOL_SIZE"]),
                           max_overflow=int(cfg["DATABASE_MAX_OVERFLOW"]),
                           pool_timeout=float(cfg["DATABASE_POOL_TIMEOUT"]), tls=cfg["DATABASE_TLS"],
                           tls_ca=cfg.get("DATABASE_TLS_CA"),
                           ping_after_idle=float(cfg["DATABASE_PING_AFTER_IDLE_SECONDS"]))
        self.cache = cache_from_url(cfg.get("REDIS_URL"))
        # Cache keys and pub/sub channels are namespaced by deployment (its database).
        self.namespace = cfg.get("CACHE_NAMESPACE") or hashlib.sha256(
            self.db.url.render_as_string(hide_password=True).encode()).hexdigest()[:12]
        self.plugins = Plugins(cfg.get("TRADELOOP_PLUGINS"))
        self.table_owners = self.plugins.tables()
        self.topics = self.plugins.collect_unique("register_topics", "topic", key=lambda t: t.name)
        self.sse_streams = self.plugins.collect_unique("register_sse_streams", "SSE path", key=lambda s: s.path)
        self.migrations = dict(self.plugins.call("register_migrations"))
        self._bus = None
        self._hub = None

    # -- backends ----------------------------------------------------------------------
    @property
    def bus(self):
        if self._bus is None:
            if self.config.get("KAFKA_BOOTSTRAP_SERVERS"):
                from bus.kafka import KafkaBus
                self._bus = KafkaBus(self.config["KAFKA_BOOTSTRAP_SERVERS"],
                                     client_id=self.config.get("KAFKA_CLIENT_ID", "tradeloop"),
                                     topic_prefix=self.config.get("KAFKA_TOPIC_PREFIX", ""))
            else:
                from bus.local import LocalBus
                self._bus = LocalBus(self.db)
        return self._bus

    def hub(self):
        if self._hub is None:
            import threading
            from app.sse import Hub
            # One hub per process: concurrent first streams would each build one (its set-up
            # reads the database, so greenlets interleave), splitting subscribers and limits.
            with self.__dict__.setdefault("_hub_lock", threading.Lock()):
                if self._hub is None:
                    self._hub = Hub(self.db, self.cache, [s.topic for _, s in self.sse_streams],
                                    float(self.config["SSE_POLL_SECONDS"]), namespace=self.namespace)
        return self._hub

    def topic_names(self) -> list[str]:
        return [t.name for _, t in self.topics]

    # -- the request transaction --------------------------------------------------------
    def request_conn(self, *, claim: bool = True):
        """The request's connection, its transaction begun on first use; the request's
        Idempotency-Key record is claimed as its first statement (``claim=False``: the caller
        makes the claim itself)."""
        c = g.get("_tl_conn")
        if c is None:
            c = self.db.engine.connect()
            c.info["after_commit"] = []
            g._tl_conn = c  # end_request closes it whatever happens next (a failing BEGIN too)
            outbox.defer_positions(c)  # stream positions taken last, just before COMMIT
            c.begin()
            if claim:
                idempotency.claim_if_pending(self, c)
        return c

    def end_request(self, commit: bool) -> bool:
        """Commit or roll back the request transaction (if one was opened). Returns whether
        a commit happened."""
        from bus.sql import run_after_commit
        c = g.pop("_tl_conn", None)
        if c is None:
            return False
        try:
            if commit:
                # The counter bump and the outbox insert are the last statements; on MySQL/MariaDB
                # they go in one round trip with COMMIT (the commit below then sends nothing).
                outbox.flush_and_commit(c)
                c.commit()
                run_after_commit(c)
                return True
            c.rollback()
            return False
        finally:
            c.info.pop("after_commit", None)
            c.info.pop("bus_emitted", None)
            outbox.discard(c)
            c.close()

    # -- cross-context hooks ------------------------------------------------------------
    def check_order_allowed(self, conn, user_id: int, order: dict) -> list:
        vetoes = []
        for _plugin, result in self.plugins.call("check_order_allowed", conn=conn, user_id=user_id, order=order):
            vetoes.extend(result)
        return vetoes

    def scoring_mode(self, conn, user_id) -> str:
        for _plugin, mode in self.plugins.call("scoring_mode", conn=conn, user_id=user_id):
            if mode == "rules_only":
                return "rules_only"
        return "normal"


def create_app(overrides: dict | None = None) -> Flask:
    cfg = config_mod.load(overrides)
    app = Flask("tradeloop", static_folder=None)
    app.config.update(cfg)
    app.config.update(
        API_TITLE="tradeloop",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/static/swagger-ui/",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="tradeloop_session",
        JSON_SORT_KEYS=False,
        API_SPEC_OPTIONS={
            "info": {"description": (
                "tradeloop: trade log, risk graph, ML loop and breakers as plugins of one host. "
                "Authenticate with `Authorization: Bearer <token>` or a browser session. Every "
                "POST/PUT/PATCH/DELETE accepts `Idempotency-Key`; changes to versioned resources "
                "need `If-Match`. Errors share one JSON shape. Events: /asyncapi.json.")},
            "components": {"securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "tradeloop_session"}}},
            "security": [{"bearerAuth": []}, {"cookieAuth": []}],
        },
    )
    app.secret_key = cfg["SECRET_KEY"]
    app.json.sort_keys = False
    from bus.envelope import JSONEncoder

    class _Provider(type(app.json)):
        def dumps(self, obj, **kwargs):
            kwargs.setdefault("cls", JSONEncoder)
            kwargs.pop("default", None)
            return json.dumps(obj, **kwargs)
    app.json = _Provider(app)

    ext_ = Tradeloop(app, cfg)
    app.extensions["tradeloop"] = ext_
    api = Api(app)
    from app.fields import Money as MoneyField
    api.register_field(MoneyField, "string", "decimal")  # money travels as a string, never a float
    api.ma_plugin.converter.add_attribute_function(_money_bounds)
    app.extensions["tradeloop_api"] = api

    from app import auth, core_views
    api.register_blueprint(auth.blp)
    api.register_blueprint(core_views.blp)
    from app import jobs
    jobs.init_app(app, ext_)  # ext_.jobs, /api/jobs, /sse/jobs (before the SSE routes below)
    owners: dict[tuple[str, str], str] = {}
    _claim_routes(app, owners, "host")
    for plugin, blps in ext_.plugins.call("register_blueprints", app=app):
        for blp in blps:
            api.register_blueprint(blp)
        _claim_routes(app, owners, plugin)
    api.on_spec_built(_document_headers)
    core_views.register_sse(app, ext_)
    core_views.register_static(app)
    from app import console
    console.register(app)
    for plugin, commands in ext_.plugins.call("register_commands"):
        for cmd in commands:
            if cmd.name in app.cli.commands:
                raise PluginError(f"command {cmd.name!r} is claimed by both an earlier plugin and {plugin!r}")
            _with_app_context(cmd)
            app.cli.add_command(cmd)
    _install_request_hooks(app, ext_)
    security.init_app(app, ext_)  # sessions' cookie upkeep, CSRF, rate limits, proxy headers
    from app import observability
    observability.init_app(app, ext_)  # access log, X-Request-ID, /metrics
    from app import web
    web.install_query_check(app)  # unknown query parameters: 422 (after the hooks above)
    _install_notifier(ext_)
    for _plugin, _ in ext_.plugins.call("app_ready", app=app):
        pass
    return app


def prepare_to_serve(app: Flask) -> None:
    """Build what ``create_app`` leaves to first use (so CLI commands start fast) before a
    server takes requests: the OpenAPI document (CPU work that should not land on the first
    request's gevent loop)."""
    app.extensions["tradeloop_api"].spec


def _money_bounds(self, field, ret, **kwargs):
    """A decimal-string field cannot carry JSON-Schema numeric bounds (they would be strings):
    state them in the description instead."""
    from app.fields import Money as MoneyField
    if isinstance(field, ma.Decimal) and field.as_string and not isinstance(field, MoneyField):
        ret["type"] = "string"  # a Decimal sent as a string is a string on the wire
        ret.setdefault("format", "decimal")
    if isinstance(field, MoneyField) or (isinstance(field, ma.Decimal) and field.as_string):
        # Money is read from a decimal string or a JSON number (Money._deserialize) and always
        # written as a decimal string: an input-capable field says both, so a client (or the
        # contract fuzzer) sending 0.95 is inside the document.
        readable = isinstance(field, MoneyField) and not field.dump_only and field.metadata.get("type") != "string"
        if readable:
            ret.pop("type", None)
            ret.pop("format", None)
            ret["anyOf"] = [{"type": "string", "format": "decimal"}, {"type": "number"}]
        bounds = [f"{k} {ret.pop(k)}" for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") if k in ret]
        if bounds:
            kind = "decimal string or number" if readable else "decimal string"
            ret["description"] = (ret.get("description", "") + f" ({kind}; {', '.join(bounds)})").strip()
    return {}


def _with_app_context(cmd) -> None:
    """Plugin commands (and a group's subcommands) run inside the app context."""
    from flask.cli import with_appcontext
    if cmd.callback is not None and not getattr(cmd.callback, "_tl_ctx", False):
        cmd.callback = with_appcontext(cmd.callback)
        cmd.callback._tl_ctx = True
    for sub in getattr(cmd, "commands", {}).values():
        _with_app_context(sub)


def _claim_routes(app: Flask, owners: dict, plugin: str) -> None:
    """Attribute the rules added since the last call to ``plugin``; a (rule, method) that
    an earlier plugin (or the host) already serves is a start-up error."""
    seen = owners.setdefault("__rules__", set())
    for rule in app.url_map.iter_rules():
        if id(rule) in seen:
            continue
        seen.add(id(rule))
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            key = (rule.rule, method)
            if key in owners and owners[key] != plugin:
                raise PluginError(f"route {method} {rule.rule} is claimed by both {owners[key]!r} and {plugin!r}")
            owners[key] = plugin


IDEMPOTENCY_PARAM = {
    "in": "header", "name": "Idempotency-Key", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": ("Makes the request safe to retry: the same key with the same request replays "
                    "the first response; with a different request it is 422; while the first is "
                    "still running, 409. Scoped to you, kept 24 h."),
}


def _document_headers(spec) -> None:
    """Add the Idempotency-Key header to every mutating operation of the spec."""
    paths = spec._paths  # apispec keeps operations here until to_dict()
    for ops in paths.values():
        for method, op in ops.items():
            if method.upper() in idempotency.METHODS and isinstance(op, dict):
                params = op.setdefault("parameters", [])
                if not any(p.get("name") == "Idempotency-Key" for p in params if isinstance(p, dict)):
                    params.append(dict(IDEMPOTENCY_PARAM))


def _is_public() -> bool:
    if request.endpoint is None:
        return True  # 404/405: let the router answer
    if request.blueprint == "api-docs" or request.endpoint in ("static",) or request.endpoint.startswith("tl_public"):
        return True
    view = current_app.view_functions.get(request.endpoint)
    if getattr(view, "_public", False):
        return True
    cls = getattr(view, "view_class", None)
    if cls is not None:
        meth = getattr(cls, request.method.lower(), None)
        if getattr(meth, "_public", False):
            return True
    return False


def _install_request_hooks(app: Flask, ext_: Tradeloop) -> None:
    from app.auth import authenticate

    @app.before_request
    def _authenticate():
        g.user = None
        routing.check_route()  # 404/405 before anything else (app.routing)
        if request.method == "OPTIONS":
            return None
        try:
            g.user = authenticate(ext_.db)
        except errors.Unauthorized:
            if not _is_public():
                raise
        if g.user is None and not _is_public():
            raise errors.Unauthorized()
        security.before_request(ext_)  # admin-only, CSRF, rate limits (app.security)
        return idempotency.before_request(ext_)

    @app.after_request
    def _finish(response):
        ok = response.status_code < 400
        try:
            if ok:  # (also when the view never opened the transaction: the record is durable)
                idempotency.complete(ext_, response)
            committed = ext_.end_request(commit=ok)
        except idempotency.ReplayInstead as replay:  # another request's record has this key
            return replay.response
        except Exception as exc:
            log.exception("commit failed")
            ext_.end_request(commit=False)
            idempotency.after_commit(ext_, committed=False)
            body = {"status": 503, "code": "commit_failed",
                    "message": f"the change could not be committed ({type(exc).__name__}); nothing was saved, retry"}
            resp = jsonify(body)
            resp.status_code = 503
            resp.headers["Retry-After"] = "1"
            return resp
        idempotency.after_commit(ext_, committed=committed)
        return response

    @app.teardown_request
    def _teardown(exc):
        if g.get("_tl_conn") is not None:
            ext_.end_request(commit=False)
            idempotency.after_commit(ext_, committed=False)

    @app.errorhandler(idempotency.ReplayInstead)
    def _replay_instead(exc):
        return exc.response

    @app.errorhandler(errors.DomainError)
    def _domain_error(exc: errors.DomainError):
        resp = jsonify(exc.body())
        resp.status_code = exc.status
        if isinstance(exc, errors.VersionConflict) and exc.current and "version" in exc.current:
            resp.headers["ETag"] = f'"{exc.current["version"]}"'
        if isinstance(exc, errors.IdempotencyInFlight):
            resp.headers["Retry-After"] = "1"
        for name, value in (getattr(exc, "headers", None) or {}).items():
            resp.headers[name] = value  # e.g. Retry-After on a 429
        if exc.status == 401:
            resp.headers["WWW-Authenticate"] = 'Bearer realm="tradeloop"'
        return resp


def _install_notifier(ext_: Tradeloop) -> None:
    """Tell other processes' SSE hubs that a stream moved (Redis pub/sub), best effort."""
    if getattr(ext_.cache, "name", "") != "redis":
        return
    from app.cache import CacheUnavailable
    from app.sse import channel
    name = channel(ext_.namespace)
    from bus import outbox

    def publish(streams):
        try:
            ext_.cache.publish(name, ",".join(sorted(streams)))
        except CacheUnavailable:
            pass  # hubs fall back to polling
    outbox.add_commit_listener(publish)
